"""The split deployment: a router process and sender processes, each its own consumer group(s); and the
supervisor that `pushstream worker` runs on one machine."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import free_port
from tests.integration.crash import Kill, campaign_with, kill_process, register
from tests.integration.harness import Kafka, RoleProcess, make_stack, wait_for

USERS = 2000  # two devices each


def kill_and_restart(process: RoleProcess) -> tuple[Kill, Callable[[], None]]:
    """SIGKILL ``process``; start it again under the same name, identity and port."""
    def kill() -> tuple[str, set[int]]:
        return process.name, kill_process(process.process, process.kill)

    def restart() -> None:
        process.start().wait_ready()

    return kill, restart


async def test_router_and_two_bulk_senders_deliver_and_survive_killing_a_sender(
        tmp_path: Path, fakes: FakesProcess, processes: list[Any]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    d = stack.deployment
    router = RoleProcess(d, "router", ["--role", "router", "--datadir", str(d.root / "data-router"),
                                       "--web-host", "127.0.0.1", "--web-port", str(free_port())], 0)
    router.web_port = int(router.args[-1])
    senders = [RoleProcess(d, name, ["--role", "sender", "--lane", lane, "--web-port", str(port)], port)
               for name, lane, port in (("bulk-1", "bulk", free_port()), ("bulk-2", "bulk", free_port()),
                                        ("tx-1", "transactional", free_port()))]
    for process in (router, *senders):
        processes.append(process.start())
    for process in (router, *senders):
        process.wait_ready()
    async with Kafka(d) as kafka:
        await register(stack, kafka, [router], USERS)  # type: ignore[list-item]
        # A transactional message goes through its own sender process.
        await kafka.publish("pushstream.notifications", [
            {"id": "otp-1", "app_id": "demo", "title": "code 123456", "target": {"user_ids": ["u-00001"]}}])
        statuses = await kafka.read_json("pushstream.status", until=lambda s: sum(
            1 for r in s if r["notification_id"] == "otp-1" and r["status"] == "delivered") == 2)
        assert {r["device_id"] for r in statuses if r["notification_id"] == "otp-1"} == {
            "u-00001-ios", "u-00001-android"}

        kill, restart = kill_and_restart(senders[0])
        outcome = await campaign_with(stack, kafka, kill, restart, notification_id="sale-split",
                                      devices=2 * USERS, kill_at=0.4)
        print(outcome.summary())
        assert outcome.without_final == 0 and outcome.multiple_finals == 0, outcome.summary()
        assert outcome.repeated_after_kill == 0, outcome.summary()
        assert outcome.repeated <= 2 * 500, outcome.summary()
        assert outcome.statuses == {"delivered": 2 * USERS}

        # Killing the router mid-campaign loses nothing either: it resumes its broadcasts where they stopped.
        kill_router, restart_router = kill_and_restart(router)
        outcome = await campaign_with(stack, kafka, kill_router, restart_router, notification_id="sale-router",
                                      devices=2 * USERS, kill_at=0.3)
        print(outcome.summary())
        assert outcome.without_final == 0 and outcome.multiple_finals == 0, outcome.summary()
        assert outcome.repeated == 0, outcome.summary()  # the senders never send a routed batch twice
        assert outcome.statuses == {"delivered": 2 * USERS}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_supervisor_restarts_a_crashed_child_and_sigterm_leaves_no_process(
        tmp_path: Path, processes: list[Any]) -> None:
    from tests.integration.harness import make_deployment

    d = make_deployment(tmp_path / "d")
    port = free_port()
    machine = RoleProcess(d, "machine", ["--datadir", str(d.root / "data"), "--web-host", "127.0.0.1",
                                         "--web-port", str(port)], port)
    processes.append(machine.start())
    assert machine.process is not None
    for p in (port, port + 1, port + 2):  # the router, the transactional and the bulk sender
        machine.wait_ready(port=p)
    children = children_of(machine.process.pid)
    assert len(children) == 3, machine.log_tail()
    sender_pid = int(re.findall(r"started sender-bulk \(pid (\d+)\)", machine.log_path.read_text())[0])
    os.kill(sender_pid, signal.SIGKILL)
    wait_for(lambda: "restarted sender-bulk" in machine.log_path.read_text(), timeout=30,
             what="the supervisor to restart the bulk sender")
    machine.wait_ready(port=port + 2)
    children = children_of(machine.process.pid)
    assert sender_pid not in children and len(children) == 3
    assert machine.stop(timeout=90) == 0, machine.log_tail()
    assert all(not Path(f"/proc/{pid}").exists() for pid in children), "a child outlived the supervisor"
    # JSON logs (the default): every relayed line is one JSON object tagged with its role.
    records = [orjson.loads(line) for line in machine.log_path.read_text().splitlines()]
    assert {"router", "sender-transactional", "sender-bulk", "supervisor"} <= {r["role"] for r in records}
