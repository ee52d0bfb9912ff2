"""A broadcast campaign with a worker SIGKILLed part-way, and the counts that say what the crash cost.

Shared by tests/integration/test_crash.py (three kills in CI) and `python -m benchmarks.crash` (N runs).
Everything is real: the broker, two `faust worker` processes, the fake providers in record mode.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushstream.models.status import FINAL_STATUSES
from tests.integration.harness import Kafka, Stack, Worker, wait_for

PROVIDERS = ("apns", "fcm")


def campaign_registrations(users: int) -> list[dict[str, Any]]:
    """An iPhone and an Android phone per user: 2 x ``users`` devices."""
    events = []
    for i in range(users):
        user = f"u-{i:05d}"
        events.append({"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-ios",
                       "platform": "apns", "token": f"{i:08x}" * 8})
        events.append({"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-android",
                       "platform": "fcm", "token": f"fcm-{user}"})
    return events


def device_of(provider: str, key: str) -> str:
    if provider == "apns":
        return f"u-{int(key[:8], 16):05d}-ios"
    return f"{key.removeprefix('fcm-')}-android"


@dataclass
class CrashOutcome:
    """What one campaign with a kill produced, per device."""

    notification_id: str
    killed: str
    killed_after: int  # provider requests seen when the worker died
    devices: int
    requests: Counter[str] = field(default_factory=Counter)  # device → provider requests for this campaign
    after_kill: Counter[str] = field(default_factory=Counter)  # device → requests that arrived after the kill
    finals: Counter[str] = field(default_factory=Counter)  # device → final status records
    statuses: Counter[str] = field(default_factory=Counter)  # final status → devices
    # device → (arrival, client port, path) of each request: says which process sent a repeat, and when
    seen: dict[str, list[tuple[float, int | None, str]]] = field(default_factory=dict)
    dead_ports: set[int] = field(default_factory=set)
    killed_at: float = 0.0

    @property
    def lost(self) -> int:
        return self.devices - len(self.finals)

    @property
    def repeated(self) -> int:
        return sum(1 for n in self.requests.values() if n > 1)

    @property
    def repeated_after_kill(self) -> int:
        return sum(1 for n in self.after_kill.values() if n > 1)

    @property
    def multiple_finals(self) -> int:
        return sum(1 for n in self.finals.values() if n > 1)

    def summary(self) -> str:
        return (f"{self.notification_id}: killed {self.killed} after {self.killed_after} sends; "
                f"sent {sum(self.requests.values())}, delivered {self.statuses.get('delivered', 0)}, "
                f"repeated {self.repeated}, lost {self.lost}, repeated after the kill {self.repeated_after_kill}, "
                f"devices with >1 final status {self.multiple_finals}" + self._repeats_after_kill())

    def _repeats_after_kill(self, limit: int = 3) -> str:
        """A few devices pushed twice after the kill, with each request's time (relative to the kill) and
        client port (``dead`` when it was one of the killed process's)."""
        repeated = [d for d, n in self.after_kill.items() if n > 1][:limit]
        if not repeated:
            return ""
        def show(device: str) -> str:
            return device + " " + ", ".join(
                f"{at - self.killed_at:+.2f}s {'dead' if port in self.dead_ports else port} {path[:40]}"
                for at, port, path in self.seen.get(device, []))
        return "; e.g. " + " | ".join(show(d) for d in repeated)


def provider_counts(stack: Stack) -> dict[str, int]:
    stats = stack.fakes.stats()
    return {p: int(stats[p]["requests"]) for p in PROVIDERS}


Kill = Callable[[], tuple[str, set[int]]]  # SIGKILLs a process; returns its name and its TCP ports


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (from /proc): a fake that reads a request on one of them
    after the process died is reading what the dead process wrote before it died."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def kill_process(process: subprocess.Popen[bytes] | None, kill: Callable[[], None]) -> set[int]:
    """The process's TCP ports read just before ``kill`` SIGKILLs it."""
    ports = local_ports(process.pid) if process is not None and process.poll() is None else set()
    kill()  # returns once the process is gone
    return ports


def kill_and_restart_worker(stack: Stack, workers: list[Worker], victim: int) -> tuple[Kill, Callable[[], None]]:
    """SIGKILL ``workers[victim]``; restart it on the same data dir, web port and identity."""
    def kill() -> tuple[str, set[int]]:
        worker = workers[victim]
        return worker.name, kill_process(worker.process, worker.kill)

    def restart() -> None:
        worker = workers[victim]
        workers[victim] = Worker(stack.deployment, worker.name, web_port=worker.web_port).start()
        workers[victim].wait_ready(timeout=120)

    return kill, restart


async def campaign_with_kill(stack: Stack, kafka: Kafka, workers: list[Worker], victim: int, *,
                             notification_id: str, devices: int, kill_at: float,
                             timeout: float = 180) -> CrashOutcome:
    """Start a broadcast, SIGKILL ``workers[victim]`` once ``kill_at`` of the devices were pushed, restart it
    on the same data dir and identity, and wait until every device has a final status."""
    kill, restart = kill_and_restart_worker(stack, workers, victim)
    return await campaign_with(stack, kafka, kill, restart, notification_id=notification_id, devices=devices,
                               kill_at=kill_at, timeout=timeout)


async def campaign_with(stack: Stack, kafka: Kafka, kill: Kill, restart: Callable[[], None], *,
                        notification_id: str, devices: int, kill_at: float, timeout: float = 180) -> CrashOutcome:
    """Start a broadcast, ``kill`` a process once ``kill_at`` of the devices were pushed, ``restart`` it, and
    wait until every device has a final status."""
    before = provider_counts(stack)
    await kafka.publish("pushstream.notifications", [
        {"id": notification_id, "app_id": "demo", "channel": "marketing", "title": "sale",
         "target": {"all": True}}])

    def pushed() -> int:
        now = provider_counts(stack)
        return sum(now[p] - before[p] for p in PROVIDERS)

    wait_for(lambda: pushed() >= max(1, int(kill_at * devices)), timeout=timeout, interval=0.02,
             what=f"{kill_at:.0%} of the campaign pushed")
    killed, dead_ports = kill()
    # A request the dead process wrote just before it died may still be read by a fake a moment later (on a
    # busy machine, much later): those came on its connections, whatever time the fake read them.
    killed_at = time.time()
    restart()

    finals: Counter[str] = Counter()
    statuses: Counter[str] = Counter()

    def complete(records: list[dict[str, Any]]) -> bool:
        mine = {r["device_id"] for r in records
                if r["notification_id"] == notification_id and r["status"] in FINAL_STATUSES}
        return len(mine) >= devices

    records = await kafka.read_json("pushstream.status", until=complete, timeout=timeout, settle=3.0)
    for record in records:
        if record["notification_id"] == notification_id and record["status"] in FINAL_STATUSES:
            finals[record["device_id"]] += 1
            statuses[record["status"]] += 1
    outcome = CrashOutcome(notification_id, killed, 0, devices, finals=finals, statuses=statuses,
                           dead_ports=dead_ports, killed_at=killed_at)
    for provider in PROVIDERS:
        for request in stack.fakes.requests(provider, since=before[provider]):
            if not request["path"].startswith(("/3/device/", "/v1/projects/")):
                continue  # OAuth token fetches
            device = device_of(provider, request["key"])
            outcome.requests[device] += 1
            outcome.seen.setdefault(device, []).append((request["at"], request["peer_port"], request["path"]))
            if request["at"] <= killed_at:
                outcome.killed_after += 1
            elif request["peer_port"] not in dead_ports:
                outcome.after_kill[device] += 1
    return outcome


def start_workers(stack: Stack, workers: list[Worker], count: int = 2) -> list[Worker]:
    started = [Worker(stack.deployment, f"w{n + 1}").start() for n in range(count)]
    workers.extend(started)
    for worker in started:
        worker.wait_ready(timeout=120)
    return started


async def register(stack: Stack, kafka: Kafka, workers: list[Worker], users: int) -> None:
    await kafka.publish("pushstream.devices", campaign_registrations(users))
    await kafka.wait_drained(["pushstream.devices", "pushstream.user-events"], timeout=180)
    # Every user's devices are in the table, seen through the routed view of either worker.
    for i in range(0, users, max(1, users // 50)):
        user = f"u-{i:05d}"
        worker = workers[i % len(workers)]
        def registered(u: str = user, w: Worker = worker) -> bool:
            return len(w.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 2

        wait_for(registered, timeout=30, what=f"{user}'s devices")
