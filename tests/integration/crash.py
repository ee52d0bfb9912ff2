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
from pathlib import Path
from typing import Any

from pushstream.models.status import FINAL_STATUSES
from pushstream.testing.campaign import CampaignOutcome
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


def campaign_devices(users: int) -> set[str]:
    """The device ids `campaign_registrations` registers."""
    return {event["device_id"] for event in campaign_registrations(users)}


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
                             timeout: float = 180) -> CampaignOutcome:
    """Start a broadcast, SIGKILL ``workers[victim]`` once ``kill_at`` of the devices were pushed, restart it
    on the same data dir and identity, and wait until every device has a final status."""
    kill, restart = kill_and_restart_worker(stack, workers, victim)
    return await campaign_with(stack, kafka, kill, restart, notification_id=notification_id, devices=devices,
                               kill_at=kill_at, timeout=timeout)


async def campaign_with(stack: Stack, kafka: Kafka, kill: Kill, restart: Callable[[], None], *,
                        notification_id: str, devices: int, kill_at: float, timeout: float = 180) -> CampaignOutcome:
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
    outcome = CampaignOutcome(notification_id, campaign_devices(devices // 2), finals=finals, statuses=statuses,
                              dead_ports=dead_ports, killed=killed, killed_at=killed_at)
    for provider in PROVIDERS:
        for request in stack.fakes.requests(provider, since=before[provider]):
            if not request["path"].startswith(("/3/device/", "/v1/projects/")):
                continue  # OAuth token fetches
            outcome.add_request(device_of(provider, request["key"]), request["at"], request["peer_port"],
                                request["path"])
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
