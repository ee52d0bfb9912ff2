"""Crash safety: a worker killed with SIGKILL and restarted serves the same devices from its table, and no
event is counted twice: notifications processed before the crash are not delivered again, and a notification
published twice reaches each device once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tests.integration.harness import Kafka, Worker, make_deployment, wait_for
from tests.integration.test_fanout import configured_apps, device_events


def delivered_devices(batches: list[dict[str, Any]], notification_id: str) -> Counter[str]:
    return Counter(item["device_id"] for b in batches if b["notification_id"] == notification_id
                   for item in b["items"])


async def test_sigkill_restart_keeps_tables_and_counts_nothing_twice(tmp_path: Path, workers: list[Worker]) -> None:
    root = tmp_path / "d"
    root.mkdir()
    deployment = make_deployment(root, apps=configured_apps(root))
    worker = Worker(deployment, "w1", role="router").start()
    workers.append(worker)
    worker.wait_ready()
    users = [f"u-{i}" for i in range(6)]
    async with Kafka(deployment) as kafka:
        await kafka.publish("pushstream.devices", device_events(users))
        for user in users:
            def registered(u: str = user) -> bool:
                return len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 3

            wait_for(registered, timeout=60, what=f"{user}'s devices")
        before = {u: worker.get(f"/v1/apps/demo/users/{u}/devices").json() for u in users}

        first = {"id": "n-1", "app_id": "demo", "title": "one", "target": {"user_ids": users}}
        await kafka.publish("pushstream.notifications", [first])
        await kafka.read_json("pushstream.deliveries.fcm",
                              until=lambda bs: sum(delivered_devices(bs, "n-1").values()) >= len(users))
        # Crash once n-1 is fully handled and committed: a restart must not count or deliver it again.
        # (A crash *while* an intent is in flight may repeat that intent's sends, as the contract allows.)
        await kafka.wait_drained(["pushstream.notifications", "pushstream.intents", "pushstream.user-events"])

        worker.kill()
        restarted = Worker(deployment, "w1", web_port=worker.web_port, role="router").start()
        workers.append(restarted)
        restarted.wait_ready()
        after = {u: restarted.get(f"/v1/apps/demo/users/{u}/devices").json() for u in users}
        assert after == before

        # The same request again (a producer retry) and a new one.
        second = {"id": "n-2", "app_id": "demo", "title": "two", "target": {"user_ids": users}}
        await kafka.publish("pushstream.notifications", [first, second])
        batches = await kafka.read_json(
            "pushstream.deliveries.fcm",
            until=lambda bs: sum(delivered_devices(bs, "n-2").values()) >= len(users), settle=2.0)
        assert delivered_devices(batches, "n-1") == Counter({f"{u}-android": 1 for u in users})
        assert delivered_devices(batches, "n-2") == Counter({f"{u}-android": 1 for u in users})
        statuses = await kafka.read_json("pushstream.status", until=lambda s: len(s) >= 3 * len(users), settle=1.0)
        duplicates = [s for s in statuses if s["notification_id"] == "n-1"]
        assert len(duplicates) == 3 * len(users)
        assert {(s["status"], s["reason"]) for s in duplicates} == {("suppressed", "duplicate")}
