"""Synchronous helpers for other processes: start the fakes as a subprocess and drive the control API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson

from pushstream.processes import die_with_parent
from pushstream.testing.fakes.server import READY_FILE

_REPO_ROOT = Path(__file__).resolve().parents[3]  # so the child imports this very checkout


@dataclass(frozen=True)
class FakesEndpoints:
    """Where the running fakes listen (bound ports, also when 0 was asked for)."""

    pid: int
    apns_port: int
    fcm_port: int
    webpush_port: int
    control_port: int
    apns_url: str
    fcm_url: str
    webpush_origin: str
    control_url: str


class FakesClient:
    """Thin client for the control API (see pushstream.testing.fakes.server)."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        response = self._http.request(method, path, json=body, params=params or None)
        if response.status_code != 200:
            raise RuntimeError(f"control API {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> bool:
        """True when the control API answers."""
        return bool(self._call("GET", "/health").get("ok"))

    def setup(self) -> dict[str, Any]:
        """The DevSetup the fakes use (paths, ids, endpoints)."""
        result: dict[str, Any] = self._call("GET", "/setup")
        return result

    def stats(self) -> dict[str, Any]:
        """Counters per provider."""
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def requests(self, provider: str, since: int = 0) -> list[dict[str, Any]]:
        """Recorded requests of one provider from index ``since`` on."""
        result: list[dict[str, Any]] = self._call("GET", "/requests", provider=provider, since=since)
        return result

    def wait_for_requests(self, provider: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Poll until ``count`` requests are recorded; TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.requests(provider)
            if len(records) >= count:
                return records
            if time.monotonic() > deadline:
                raise TimeoutError(f"{provider}: {len(records)} of {count} requests after {timeout}s")
            time.sleep(0.02)

    def script(
        self,
        provider: str,
        token: str,
        status: int,
        reason: str | None = None,
        retry_after: int | None = None,
        times: int | None = None,
    ) -> None:
        """Force the answer for one token / subscription id."""
        self._call(
            "POST",
            "/script",
            {
                "provider": provider,
                "token": token,
                "status": status,
                "reason": reason,
                "retry_after": retry_after,
                "times": times,
            },
        )

    def script_fraction(
        self,
        provider: str,
        fraction: float,
        status: int,
        reason: str | None = None,
        retry_after: int | None = None,
        seed: int = 0,
    ) -> None:
        """Force the answer for a deterministic fraction of requests."""
        self._call(
            "POST",
            "/script",
            {
                "provider": provider,
                "fraction": fraction,
                "status": status,
                "reason": reason,
                "retry_after": retry_after,
                "seed": seed,
            },
        )

    def unregister(self, provider: str, token: str) -> None:
        """Mark a token / subscription as gone."""
        self._call("POST", "/unregister", {"provider": provider, "token": token})

    def reset(self, provider: str | None = None) -> None:
        """Clear records, counters and scripts (of one provider or all)."""
        self._call("POST", "/reset", {"provider": provider} if provider else {})

    def set_latency(self, seconds: float, provider: str | None = None) -> None:
        """Delay every answer by ``seconds``."""
        self._call("POST", "/latency", {"seconds": seconds, **({"provider": provider} if provider else {})})

    def goaway_after(self, provider: str, after: int | None) -> None:
        """GOAWAY each HTTP/2 connection after ``after`` requests (None = never)."""
        self._call("POST", "/goaway", {"provider": provider, "after": after})


class FakesProcess:
    """``python -m pushstream.testing.fakes`` as a child process; use as a context manager."""

    def __init__(
        self,
        setup_dir: Path,
        *,
        apns_port: int = 0,
        fcm_port: int = 0,
        webpush_port: int = 0,
        control_port: int = 0,
        benchmark: bool = False,
        startup_timeout: float = 20.0,
        tied: bool = True,
    ) -> None:
        self.setup_dir = Path(setup_dir)
        self.args = [
            "--setup-dir",
            str(self.setup_dir),
            "--apns-port",
            str(apns_port),
            "--fcm-port",
            str(fcm_port),
            "--webpush-port",
            str(webpush_port),
            "--control-port",
            str(control_port),
            *(["--benchmark"] if benchmark else []),
        ]
        self.startup_timeout = startup_timeout
        self.tied = tied  # ends with its parent; off for processes meant to outlive it (bench --keep)
        self.log_file = self.setup_dir / "fakes.log"
        self.endpoints: FakesEndpoints | None = None
        self.client: FakesClient | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> FakesClient:
        """Spawn the fakes and wait (polling, with a deadline) until they listen."""
        self.setup_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self.setup_dir / READY_FILE
        ready_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pushstream.testing.fakes", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent() if self.tied else None,  # never outlives a killed test run
            )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"fakes exited with {self._process.returncode}: {self._log_tail()}")
            ready = self._read_ready(ready_file)
            if ready is not None:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"fakes not ready after {self.startup_timeout}s: {self._log_tail()}")
            time.sleep(0.05)
        self.endpoints = FakesEndpoints(**{f: ready[f] for f in FakesEndpoints.__dataclass_fields__})
        self.client = FakesClient(self.endpoints.control_url)
        return self.client

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the child (it shuts down cleanly), escalate to SIGKILL after ``timeout``."""
        if self.client is not None:
            self.client.close()
            self.client = None
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def __enter__(self) -> FakesClient:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _read_ready(self, ready_file: Path) -> dict[str, Any] | None:
        if not ready_file.exists():
            return None
        ready: dict[str, Any] = orjson.loads(ready_file.read_bytes())  # written atomically by the child
        assert self._process is not None
        return ready if ready.get("pid") == self._process.pid else None

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"
