"""Child processes that do not outlive their parent.

A supervisor (`pushstream worker`) or a test harness that is SIGKILLed cannot stop its children; on Linux the
kernel can: `PR_SET_PDEATHSIG` asks it to signal the child when the parent dies. Without it, role processes
of a killed supervisor or test run keep running (and consuming) with nobody watching them.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that has the child receive ``sig`` when its parent dies (Linux;
    None elsewhere). Spawn from a thread that lives as long as the parent: the kernel tracks the forking thread."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec
