"""A newcomer's mistakes are one line on stderr and exit code 2 for every command that reads the config or talks
to Kafka: no broker on the configured port, no config file, a file that is not YAML, a misspelt key."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

PUSHSTREAM = str(Path(sys.executable).parent / "pushstream")
COMMANDS = [
    ["topics", "apply"],
    ["worker"],
    ["worker", "--no-apply", "--role", "router"],
    ["worker", "--no-apply", "--role", "sender"],
    ["replay", "--topic", "pushstream.notifications", "--from-offset", "0"],
    ["tail", "status"],
    ["dlq", "redrive", "--dry-run"],
    ["send", "--app", "demo", "--user", "u-1", "--title", "hi"],
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def run(tmp_path: Path, config: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "pushstream.yaml"
    path.write_text(config)
    return subprocess.run([PUSHSTREAM, "--config", str(path), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_an_unreachable_broker_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    port = closed_port()
    config = f"kafka: {{broker: 'kafka://127.0.0.1:{port}'}}\napps: {{demo: {{api_keys: [k]}}}}\n"
    result = run(tmp_path, config, args)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"pushstream: cannot reach the Kafka broker at 127.0.0.1:{port}: is it running, and is "
                             "kafka.broker in the config right?\n")
    assert result.stdout == ""


@pytest.mark.parametrize(("config", "message"), [
    (None, "pushstream: config file not found: "),
    ("kafka: [\n", "pushstream: "),
    ("kafka: {brokr: x}\n", "pushstream: "),
], ids=["missing", "not-yaml", "unknown-key"])
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_bad_or_missing_config_is_one_line_and_exit_2(tmp_path: Path, args: list[str], config: str | None,
                                                      message: str) -> None:
    if config is None:
        result = subprocess.run([PUSHSTREAM, "--config", str(tmp_path / "absent.yaml"), *args], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    else:
        result = run(tmp_path, config, args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    if config and "brokr" in config:
        assert "kafka.brokr: unknown key" in result.stderr


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    result = subprocess.run([PUSHSTREAM, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == f"pushstream {version('pushstream')}\n"


def test_a_bad_redrive_time_is_a_usage_error_before_any_broker_call(tmp_path: Path) -> None:
    port = closed_port()  # nothing listens: the error must come first
    config = f"kafka: {{broker: 'kafka://127.0.0.1:{port}'}}\napps: {{demo: {{api_keys: [k]}}}}\n"
    result = run(tmp_path, config, ["dlq", "redrive", "--since", "yesterday"])
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("pushstream dlq redrive: 'yesterday' is not an ISO-8601 time "
                             "(e.g. 2026-12-01T18:00:00Z)\n")
@pytest.mark.parametrize("hook", ["no_such_module_xyz:f", "pushstream.hooks.examples:nothing_here"])
@pytest.mark.parametrize("args", [c for c in COMMANDS if c[0] == "worker"], ids=" ".join)
def test_a_hook_that_cannot_be_imported_stops_a_worker_naming_it(tmp_path: Path, args: list[str],
                                                                 hook: str) -> None:
    config = f"apps: {{demo: {{api_keys: [k], hooks: {{post_send: '{hook}'}}}}}}\n"
    result = run(tmp_path, config, args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("pushstream: apps.demo.hooks.post_send: ") and result.stderr.count("\n") == 1
    assert hook.split(":")[0 if "no_such" in hook else 1] in result.stderr


def test_the_faust_entry_stops_on_a_missing_hook_too(tmp_path: Path) -> None:
    path = tmp_path / "pushstream.yaml"
    path.write_text("apps: {demo: {api_keys: [k], hooks: {pre_send: 'no_such_module_xyz:f'}}}\n")
    result = subprocess.run([str(Path(sys.executable).parent / "faust"), "-A", "pushstream.app", "worker"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PUSHSTREAM_CONFIG": str(path)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("pushstream: apps.demo.hooks.pre_send: cannot import module 'no_such_module_xyz'")
