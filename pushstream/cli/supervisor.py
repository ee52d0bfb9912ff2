"""The processes of one machine under one command: start them, restart a crashed one with backoff, relay
their output tagged with their role, and on SIGTERM/SIGINT stop them all (SIGTERM, then SIGKILL after a grace).

Tagging: with text logs each line is prefixed ``[role] ``; with JSON logs (the default) every line stays one
JSON object: a child's JSON line gets a ``role`` field if it has none, any other line (a banner, a traceback
written before logging was set up) is wrapped as ``{"time", "level": "info", "role", "logger": "stdout",
"message"}``, and the supervisor's own lines are JSON with role ``supervisor``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

import orjson

from pushstream.processes import die_with_parent

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a child that ran this long starts its backoff afresh
STOP_GRACE = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = BACKOFF_FIRST
    pumps: list[threading.Thread] = field(default_factory=list)

    def start(self, out: IO[bytes], json_lines: bool = False) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        # SIGKILL: a child stuck in its shutdown must not outlive a dead supervisor
                                        preexec_fn=die_with_parent(signal.SIGKILL))
        self.started_at = time.monotonic()
        assert self.process.stdout is not None
        tag = json_tagger(self.name) if json_lines else prefix_tagger(self.name)
        pump = threading.Thread(target=_pump, args=(self.process.stdout, tag, out), daemon=True)
        pump.start()
        self.pumps = [pump]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


_write_lock = threading.Lock()
_json_lines = False  # how the supervisor's own lines are written: set by supervise()


def prefix_tagger(role: str) -> Callable[[bytes], bytes]:
    prefix = f"[{role}] ".encode()
    return lambda line: prefix + line


def json_line(role: str, message: str, logger: str = "pushstream.supervisor", level: str = "info") -> bytes:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"time": stamp, "level": level, "role": role, "logger": logger,
                         "message": message}) + b"\n"


def json_tagger(role: str) -> Callable[[bytes], bytes]:
    def tag(line: bytes) -> bytes:
        if line.startswith(b"{"):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                if "role" in record:
                    return line if line.endswith(b"\n") else line + b"\n"
                return orjson.dumps({**record, "role": role}) + b"\n"
        return json_line(role, line.decode("utf-8", "replace").rstrip("\r\n"), logger="stdout")
    return tag


def _pump(source: IO[bytes], tag: Callable[[bytes], bytes], out: IO[bytes]) -> None:
    for line in iter(source.readline, b""):
        with _write_lock:
            out.write(tag(line))
            out.flush()


def _log(message: str, out: IO[bytes]) -> None:
    with _write_lock:
        out.write(json_line("supervisor", message) if _json_lines else f"[supervisor] {message}\n".encode())
        out.flush()


def supervise(children: Sequence[Child], out: IO[bytes] | None = None, *, json_lines: bool = False) -> int:
    """Run until SIGTERM/SIGINT; returns 0 after a clean stop of every child."""
    global _json_lines
    _json_lines = json_lines
    out = out or sys.stdout.buffer
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start(out, json_lines)
            _log(f"started {child.name} (pid {child.process.pid if child.process else '?'})", out)
        while not stopping.wait(0.2):
            now = time.monotonic()
            for child in children:
                if child.alive() or child.process is None:
                    continue
                if child.next_start == 0.0:
                    code = child.process.returncode
                    if now - child.started_at >= STABLE_AFTER:
                        child.backoff = BACKOFF_FIRST
                    child.next_start = now + child.backoff
                    _log(f"{child.name} exited with {code}; restarting in {child.backoff:.0f}s", out)
                    child.backoff = min(BACKOFF_MAX, child.backoff * 2)
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.restarts += 1
                    child.start(out, json_lines)
                    _log(f"restarted {child.name} (pid {child.process.pid if child.process else '?'}, "
                         f"restart {child.restarts})", out)
        _log("stopping", out)
        return stop_all(children, out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_all(children: Sequence[Child], out: IO[bytes]) -> int:
    for child in children:
        if child.alive() and child.process is not None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    code = 0
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _log(f"{child.name} did not stop within {STOP_GRACE:.0f}s: SIGKILL", out)
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
            code = 1
        for pump in child.pumps:
            pump.join(timeout=2)
    return code
