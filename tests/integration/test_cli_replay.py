"""`pushstream replay` on the real broker with a real worker: a time range, a dry run, the real thing, and the
router's dedup holding (a replayed notification does not reach a provider again), then `--into` delivering a
request nobody had routed yet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pushstream.kafkatools import KafkaSession
from pushstream.models.vocabulary import LANES, PLATFORMS
from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import BROKER, Kafka, Stack, Worker, make_stack, wait_for

DELIVERY_TOPICS = [f"pushstream.deliveries.{p}" + ("" if lane == "transactional" else ".bulk")
                   for p in PLATFORMS for lane in LANES]


def devices(stack: Stack) -> list[dict[str, Any]]:
    return [
        {"type": "register", "app_id": "demo", "user_id": "u-1", "device_id": "u-1-android", "platform": "fcm",
         "token": "fcm-u-1"},
        {"type": "register", "app_id": "demo", "user_id": "u-1", "device_id": "u-1-web", "platform": "webpush",
         "subscription": stack.subscription("web-u-1")},
        {"type": "register", "app_id": "demo", "user_id": "u-2", "device_id": "u-2-android", "platform": "fcm",
         "token": "fcm-u-2"},
        {"type": "register", "app_id": "demo", "user_id": "u-3", "device_id": "u-3-android", "platform": "fcm",
         "token": "fcm-u-3"},
    ]


def notification(nid: str, users: list[str]) -> dict[str, Any]:
    return {"id": nid, "app_id": "demo", "title": f"hello {nid}", "target": {"user_ids": users}}


def outcomes(records: list[dict[str, Any]], nid: str) -> list[tuple[str, str, str | None]]:
    return sorted((s["device_id"], s["status"], s["reason"]) for s in records if s["notification_id"] == nid)


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def provider_requests(stack: Stack) -> int:
    stats = stack.fakes.stats()
    return sum(stats[p]["requests"] for p in ("fcm", "webpush"))


async def test_replay_of_a_time_range_dry_and_real_does_not_redeliver(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    deployment = stack.deployment
    worker = Worker(deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    async with Kafka(deployment) as kafka:
        await kafka.publish("pushstream.devices", devices(stack))
        wait_for(lambda: all(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]
                             for u in ("u-1", "u-2", "u-3")), timeout=60, what="registrations")

        async def statuses_until(nid: str, count: int) -> list[dict[str, Any]]:
            return await kafka.read_json("pushstream.status",
                                         until=lambda s: len(outcomes(s, nid)) >= count)

        await kafka.publish("pushstream.notifications", [notification("n-1", ["u-1", "u-2"])],
                            key=lambda n: n["id"])
        await statuses_until("n-1", 3)
        from_time = iso_now()
        await kafka.publish("pushstream.notifications", [notification("n-2", ["u-1"])], key=lambda n: n["id"])
        await statuses_until("n-2", 2)
        to_time = iso_now()
        await kafka.publish("pushstream.notifications", [notification("n-3", ["u-2"])], key=lambda n: n["id"])
        statuses = await statuses_until("n-3", 1)
        assert outcomes(statuses, "n-2") == [("u-1-android", "delivered", None), ("u-1-web", "delivered", None)]
        await kafka.wait_drained(["pushstream.notifications", "pushstream.intents"])

        async with KafkaSession(BROKER) as session:
            notifications_end = await session.end_offsets(deployment.topic("pushstream.notifications"))
            deliveries_end = {t: await session.end_offsets(deployment.topic(t)) for t in DELIVERY_TOPICS}

        # The dry run counts the one request in [from_time, to_time) and publishes nothing.
        dry = deployment.cli("replay", "--topic", "pushstream.notifications", "--from-time", from_time,
                             "--to-time", to_time, "--dry-run")
        assert f"1 record of {deployment.topic('pushstream.notifications')} would be re-published" in dry.stdout
        assert [line for line in dry.stdout.splitlines() if line.startswith("partition ")
                and ": 1 record (offsets" in line], dry.stdout
        async with KafkaSession(BROKER) as session:
            assert await session.end_offsets(deployment.topic("pushstream.notifications")) == notifications_end

        before = await provider_requests(stack)
        # The full topic name works as well as the contract's bare name.
        real = deployment.cli("replay", "--topic", deployment.topic("pushstream.notifications"),
                              "--from-time", from_time, "--to-time", to_time)
        assert "1 record of" in real.stdout and "re-published to" in real.stdout, real.stdout
        assert "replay 1/1 (100%)" in real.stderr  # the plain progress line (stderr is not a terminal)

        # The router answers the replayed n-2 with `duplicate` for u-1's devices, and routes nothing.
        statuses = await kafka.read_json(
            "pushstream.status", until=lambda s: sum(r == "duplicate" for _, _, r in outcomes(s, "n-2")) >= 2)
        await kafka.wait_drained(["pushstream.notifications", "pushstream.intents"])
        assert outcomes(statuses, "n-2") == [
            ("u-1-android", "delivered", None), ("u-1-android", "suppressed", "duplicate"),
            ("u-1-web", "delivered", None), ("u-1-web", "suppressed", "duplicate")]
        async with KafkaSession(BROKER) as session:
            assert {t: await session.end_offsets(deployment.topic(t)) for t in DELIVERY_TOPICS} == deliveries_end
            copies = await session.end_offsets(deployment.topic("pushstream.notifications"))
        assert sum(copies.values()) == sum(notifications_end.values()) + 1
        assert await provider_requests(stack) == before

        # The copy keeps key, value and timestamp, and says where it came from.
        records = await kafka.read("pushstream.notifications", until=lambda rs: len(rs) == 4)
        original = next(r for r in records if r.key == b"n-2" and not r.headers)
        copy = next(r for r in records if r.key == b"n-2" and r.headers)
        assert (copy.value, copy.timestamp, copy.partition) == (original.value, original.timestamp,
                                                               original.partition)
        assert dict(copy.headers)["pushstream-replay-of"] == (
            f"{deployment.topic('pushstream.notifications')}:{original.partition}:{original.offset}".encode())

        # --into: a request parked on another topic was never routed, so replaying it delivers it.
        staging = deployment.topic("staging")
        admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name=staging, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()
        assert kafka.producer is not None
        await (await kafka.producer.send(staging, orjson.dumps(notification("n-4", ["u-3"])), key=b"n-4",
                                         partition=1, headers=[("trace", b"t-1")]))
        into = deployment.cli("replay", "--topic", staging, "--from-offset", "0", "--into",
                              "pushstream.notifications")
        assert f"1 record of {staging} re-published to {deployment.topic('pushstream.notifications')}" in into.stdout
        statuses = await statuses_until("n-4", 1)
        assert outcomes(statuses, "n-4") == [("u-3-android", "delivered", None)]
        records = await kafka.read("pushstream.notifications", until=lambda rs: any(r.key == b"n-4" for r in rs))
        copy = next(r for r in records if r.key == b"n-4")
        assert copy.partition == 1 and dict(copy.headers)["trace"] == b"t-1"


def test_replay_rejects_a_partition_the_topic_does_not_have(tmp_path: Path) -> None:
    from tests.integration.harness import make_deployment

    deployment = make_deployment(tmp_path / "d")
    result = deployment.cli("replay", "--topic", "pushstream.notifications", "--from-offset", "0",
                            "--partition", "9", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"pushstream replay: {deployment.topic('pushstream.notifications')} has no "
                                     "partition 9 (it has 4)")
