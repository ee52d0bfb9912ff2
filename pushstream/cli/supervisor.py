"""The processes of one machine under one command: start them, restart a crashed one with backoff, prefix
their output with their role, and on SIGTERM/SIGINT stop them all (SIGTERM, then SIGKILL after a grace)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

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

    def start(self, out: IO[bytes]) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.started_at = time.monotonic()
        assert self.process.stdout is not None
        pump = threading.Thread(target=_pump, args=(self.process.stdout, f"[{self.name}] ".encode(), out),
                                daemon=True)
        pump.start()
        self.pumps = [pump]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


_write_lock = threading.Lock()


def _pump(source: IO[bytes], prefix: bytes, out: IO[bytes]) -> None:
    for line in iter(source.readline, b""):
        with _write_lock:
            out.write(prefix + line)
            out.flush()


def _log(message: str, out: IO[bytes]) -> None:
    with _write_lock:
        out.write(f"[supervisor] {message}\n".encode())
        out.flush()


def supervise(children: Sequence[Child], out: IO[bytes] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns 0 after a clean stop of every child."""
    out = out or sys.stdout.buffer
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start(out)
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
                    child.start(out)
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
