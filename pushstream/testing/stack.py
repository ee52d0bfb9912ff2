"""A whole local stack for development, the demo, benchmarks and integration tests: config for the fakes,
worker processes, and readiness polling. Real processes only; nothing here mocks Kafka."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from pushstream.processes import die_with_parent

BIN = Path(sys.executable).parent


def free_port(preferred: int = 0) -> int:
    """A loopback port to listen on: ``preferred`` when it is free, else one the OS picks."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_app_config(setup: dict[str, Any], api_keys: list[str]) -> dict[str, Any]:
    """An `apps.<id>` section that sends to the fake providers described by ``setup`` (DevSetup.to_json())."""
    return {
        "api_keys": api_keys,
        "apns": {
            "key_file": setup["apns_key_file"],
            "key_id": setup["apns_key_id"],
            "team_id": setup["apns_team_id"],
            "topic": setup["apns_topic"],
            "environment": "sandbox",
            "endpoint": setup["apns_endpoint"],
            "ca_file": setup["ca_cert_file"],
        },
        "fcm": {
            "credentials_file": setup["fcm_service_account_file"],
            "project_id": setup["fcm_project_id"],
            "endpoint": setup["fcm_endpoint"],
        },
        "webpush": {
            "vapid_private_key_file": setup["vapid_private_key_file"],
            "vapid_subject": "mailto:ops@example.com",
            "allowed_endpoint_hosts": ["127.0.0.1"],
        },
    }


def write_topics_file(path: Path, source: Path, partitions: int | None = None,
                      replication_factor: int | None = None) -> Path:
    """A copy of the topics file ``source`` at ``path``, with every topic (and the user partitions) at
    ``partitions`` partitions and the default replication factor at ``replication_factor`` if given: a test or
    benchmark run's own layout."""
    if partitions is None and replication_factor is None:
        shutil.copyfile(source, path)
        return path
    layout = yaml.safe_load(source.read_text())
    if partitions is not None:
        layout["user_partitions"] = partitions
        for spec in layout["topics"].values():
            if "partitions" in spec:
                spec["partitions"] = partitions
    if replication_factor is not None:
        layout["replication_factor"] = replication_factor
    path.write_text(yaml.safe_dump(layout, sort_keys=False))
    return path


def spawn(argv: list[str], *, config_path: Path, worker_id: str, log_path: Path,
          extra_env: dict[str, str] | None = None, tied: bool = True) -> subprocess.Popen[bytes]:
    """Start a pushstream process as production would: the config named by PUSHSTREAM_CONFIG and no other
    PUSHSTREAM_* variable of this process, its worker id (static membership and transactional ids come from
    it, so a restart with the same one keeps its partitions), run from the config's directory, output
    appended to ``log_path``. ``tied``: the process gets SIGTERM when this one dies (off for the benchmark's
    --keep, whose processes are meant to outlive it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHSTREAM_")}
    env["PUSHSTREAM_CONFIG"] = str(config_path)
    env["PUSHSTREAM_WORKER_ID"] = worker_id
    env.update(extra_env or {})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # Stopped with the harness even when it is killed: an orphaned role keeps consuming and loads the machine.
        return subprocess.Popen(argv, env=env, cwd=config_path.parent, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent() if tied else None)


class Deadline:
    """A point in time after which waiting for ``what`` is an error."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout, self.what = timeout, what
        self.end = time.monotonic() + timeout

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise TimeoutError(f"timed out after {self.timeout}s waiting for {self.what}")


def wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str) -> Any:
    """Poll ``condition`` until truthy or fail at the deadline."""
    deadline = Deadline(timeout, what)
    while not (value := condition()):
        deadline.check()
        time.sleep(interval)
    return value


async def wait_until_async(condition: Callable[[], Any], *, timeout: float, interval: float = 0.05,
                           what: str) -> Any:
    """Async twin of wait_until, for code running in an event loop."""
    deadline = Deadline(timeout, what)
    while not (value := condition()):
        deadline.check()
        await asyncio.sleep(interval)
    return value


@dataclass
class WorkerProcess:
    """A `faust -A pushstream.app worker` process with its own data dir and web port."""

    config_path: Path
    datadir: Path
    web_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] | None = None
    tied: bool = True  # ends with its parent (see spawn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> Self:
        self.process = spawn(
            [str(BIN / "faust"), "--datadir", str(self.datadir), "-A", "pushstream.app", "worker", "-l", "info",
             "--web-host", "127.0.0.1", "--web-port", str(self.web_port)],
            config_path=self.config_path, worker_id=self.datadir.name, log_path=self.log_path,
            extra_env=self.extra_env, tied=self.tied)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"worker exited:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 90) -> Self:
        try:
            wait_until(self.ready, timeout=timeout, interval=0.2, what=f"worker on :{self.web_port} /readyz")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None
        return self

    def kill(self) -> None:
        """SIGKILL, like a crashed pod: no shutdown hooks, no final commit."""
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
