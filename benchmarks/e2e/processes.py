"""The pushstream processes of a run: started, restarted in the recovery phase, polled for readiness."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pushstream.testing.stack import WorkerProcess, free_port, spawn, wait_until

BIN = Path(sys.executable).parent


@dataclass
class RoleProcess(WorkerProcess):
    """A pushstream process of the benchmark: `pushstream worker --role router|sender ...` (split) or, without
    ``argv``, the all-in-one `faust -A pushstream.app worker` of WorkerProcess."""

    name: str = "worker1"
    argv: list[str] | None = None

    def start(self) -> RoleProcess:
        if self.argv is None:
            super().start()
            return self
        # One worker id per process (its name), kept across restarts.
        self.process = spawn([str(BIN / "pushstream"), "worker", "--no-apply", *self.argv],
                             config_path=self.config_path, worker_id=self.name, log_path=self.log_path,
                             extra_env=self.extra_env, tied=self.tied)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


def make_processes(args: argparse.Namespace, config_path: Path, run_dir: Path,
                   extra_env: dict[str, str] | None) -> list[RoleProcess]:
    """The pushstream processes of the deployment; the first one is the one the recovery phase restarts."""
    def proc(name: str, argv: list[str] | None, port: int) -> RoleProcess:
        return RoleProcess(config_path=config_path, datadir=run_dir / f"data-{name}", web_port=port,
                           log_path=run_dir / f"{name}.log", extra_env=extra_env, name=name, argv=argv,
                           tied=not args.keep)  # --keep: they outlive the benchmark

    # Ephemeral ports: runs side by side must not race for the same preferred one.
    if args.deployment == "all-in-one":
        return [proc(f"worker{i + 1}", None, free_port(0)) for i in range(args.workers)]
    port = free_port(0)
    out = [proc("router", ["--role", "router", "--datadir", str(run_dir / "data-router"), "-l", "info",
                           "--web-host", "127.0.0.1", "--web-port", str(port)], port)]
    senders = [("sender-transactional", "transactional")]
    senders += [(f"sender-bulk-{i + 1}", "bulk") for i in range(args.bulk_senders)]
    for name, lane in senders:
        port = free_port(0)
        out.append(proc(name, ["--role", "sender", "--lane", lane, "--web-port", str(port)], port))
    return out


def restart_worker(worker: RoleProcess, how: str, *, timeout: float) -> dict[str, Any]:
    """Stop worker 1 the given way, start it on the same data dir (wiped for `wipe`), time /readyz."""
    stopping = time.monotonic()
    if how == "sigkill":
        worker.kill()
    else:
        worker.stop(timeout=60)
    stop_seconds = time.monotonic() - stopping
    exit_code = worker.process.returncode if worker.process else None
    if how == "wipe":
        shutil.rmtree(worker.datadir, ignore_errors=True)
    started = time.monotonic()
    worker.start()
    seen: dict[str, float] = {}

    def ready() -> bool:
        if not worker.alive():
            raise RuntimeError(f"worker exited during recovery:\n{worker.log_tail()}")
        try:
            response = httpx.get(f"{worker.url}/readyz", timeout=2)
        except httpx.HTTPError:
            return False
        now = time.monotonic() - started
        seen.setdefault("web_up_seconds", now)
        if response.json().get("assigned"):
            seen.setdefault("assigned_seconds", now)
        return response.status_code == 200

    try:
        wait_until(ready, timeout=timeout, interval=0.1, what=f"worker on :{worker.web_port} /readyz after {how}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{worker.log_tail()}") from None
    return {"ready_seconds": round(time.monotonic() - started, 2),
            **{k: round(v, 2) for k, v in seen.items()},
            "stop_seconds": round(stop_seconds, 2), "exit_code": exit_code}


def wait_all_ready(workers: list[RoleProcess], *, timeout: float) -> None:
    # A worker that turned ready can lose readiness when the next one joins (rebalance): check all at once.
    wait_until(lambda: all(w.ready() for w in workers), timeout=timeout, interval=0.2, what="every worker's /readyz")
