"""A child started with `die_with_parent` ends when its parent is SIGKILLed (the supervisor's role processes
and a test run's workers never outlive them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pushstream.processes import die_with_parent

# The parent starts a child that sleeps for a minute, prints the child's pid and waits to be killed.
PARENT = textwrap.dedent("""
    import subprocess, sys, time
    from pushstream.processes import die_with_parent
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             preexec_fn=die_with_parent() if sys.argv[1] == "yes" else None)
    print(child.pid, flush=True)
    time.sleep(60)
""")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie until init reaps it: gone for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z"


def start_parent(tie: str) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, tie], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def wait_gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if gone(pid):
            return True
        time.sleep(0.02)
    return gone(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_child_ends_when_its_parent_is_killed() -> None:
    parent, child = start_parent("yes")
    assert not gone(child)
    parent.kill()
    parent.wait()
    assert wait_gone(child, 10), f"child {child} outlived its SIGKILLed parent"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_without_it_the_child_is_orphaned() -> None:
    """The control: the test above fails without `die_with_parent`."""
    parent, child = start_parent("no")
    try:
        parent.kill()
        parent.wait()
        assert not wait_gone(child, 1)
    finally:
        os.kill(child, signal.SIGKILL)


def test_is_a_preexec_hook_on_linux() -> None:
    hook = die_with_parent()
    assert (hook is not None) == sys.platform.startswith("linux")


# A supervisor SIGKILLed while its child ignores SIGTERM (seen: a router stuck in its shutdown after the broker
# outage test, at 50% CPU for the rest of the CI run).
SUPERVISOR = textwrap.dedent("""
    import os, sys
    from pushstream.cli.supervisor import Child, supervise
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ignoring', flush=True);"
                " time.sleep(60)")
    supervise([Child("stubborn", [sys.executable, "-c", stubborn], dict(os.environ))], sys.stdout.buffer)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_supervisor_takes_even_a_stubborn_child_along() -> None:
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True)
    assert supervisor.stdout is not None
    line = supervisor.stdout.readline()
    assert "started stubborn (pid " in line, line
    child = int(line.split("(pid ")[1].split(")")[0])
    while "ignoring" not in line:  # the child's own line, pumped by the supervisor: SIGTERM is ignored now
        line = supervisor.stdout.readline()
        assert line, "the supervisor ended before its child was ready"
    supervisor.kill()
    supervisor.wait()
    assert wait_gone(child, 10), f"child {child} outlived its SIGKILLed supervisor"
