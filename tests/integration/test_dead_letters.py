"""Bad input never crashes a worker and is never dropped: 1,000 malformed records interleaved with valid
ones all reach the DLQ with a reason and their origin, and every valid record is processed."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from tests.integration.harness import Deployment, Kafka, Worker, make_deployment, wait_for
from tests.integration.test_fanout import configured_apps

MALFORMED_KINDS = [
    ("bad_json", lambda i: b"{not json " + str(i).encode()),
    ("bad_json", lambda i: b"\xff\xfe binary " + str(i).encode()),
    ("missing_field", lambda i: orjson.dumps({"type": "register", "app_id": "demo", "device_id": f"x{i}",
                                               "platform": "fcm", "token": "t"})),
    ("unknown_platform", lambda i: orjson.dumps({"type": "register", "app_id": "demo", "user_id": f"x{i}",
                                                  "device_id": "d", "platform": "blackberry", "token": "t"})),
    ("unknown_app", lambda i: orjson.dumps({"type": "register", "app_id": "nope", "user_id": f"x{i}",
                                             "device_id": "d", "platform": "fcm", "token": "t"})),
    ("oversize", lambda i: orjson.dumps({"type": "register", "app_id": "demo", "user_id": f"x{i}",
                                          "device_id": "d", "platform": "fcm", "token": "t" * 70_000})),
    ("bad_token", lambda i: orjson.dumps({"type": "register", "app_id": "demo", "user_id": f"x{i}",
                                           "device_id": "d", "platform": "apns", "token": "not-hex"})),
    ("bad_json", lambda i: b"[1, 2, 3]"),
]


def start_worker(tmp_path: Path, workers: list[Worker]) -> tuple[Deployment, Worker]:
    root = tmp_path / "d"
    root.mkdir()
    deployment = make_deployment(root, apps=configured_apps(root))
    worker = Worker(deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    return deployment, worker


async def test_malformed_records_go_to_the_dlq_and_valid_ones_are_processed(
    tmp_path: Path, workers: list[Worker]
) -> None:
    deployment, worker = start_worker(tmp_path, workers)

    records: list[Any] = []
    expected_reasons: Counter[str] = Counter()
    valid_users = []
    for i in range(1000):
        reason, make = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
        records.append(make(i))
        expected_reasons[reason] += 1
        user = f"ok-{i}"
        valid_users.append(user)
        records.append({"type": "register", "app_id": "demo", "user_id": user, "device_id": "phone",
                        "platform": "fcm", "token": f"fcm-{i}"})
    async with Kafka(deployment) as kafka:
        await kafka.publish("pushstream.devices", records)
        dead = await kafka.read("pushstream.dlq", until=lambda rs: len(rs) >= 1000, settle=1.0)
        letters = [orjson.loads(r.value) for r in dead]
        assert len(letters) == 1000
        assert Counter(letter["reason"] for letter in letters) == expected_reasons
        originals = {bytes(r) if isinstance(r, bytes) else orjson.dumps(r) for r in records}
        for letter in letters:
            assert letter["topic"] == deployment.topic("pushstream.devices")
            assert letter["partition"] is not None and letter["offset"] is not None
            assert letter["detail"]
            raw = (base64.b64decode(letter["value"]) if letter["value_encoding"] == "base64"
                   else letter["value"].encode())
            assert raw in originals

        # Every valid registration reached the registry: a notification to all of them yields one FCM
        # delivery per user.
        await kafka.publish("pushstream.notifications", [
            {"id": "n-all", "app_id": "demo", "title": "hello", "target": {"user_ids": valid_users}}])
        batches = await kafka.read_json(
            "pushstream.deliveries.fcm", until=lambda bs: sum(len(b["items"]) for b in bs) >= 1000, settle=1.0)
        assert sorted(item["user_id"] for b in batches for item in b["items"]) == sorted(valid_users)
    assert worker.alive()


async def test_a_corrupt_internal_record_is_dead_lettered_and_the_agent_keeps_going(
    tmp_path: Path, workers: list[Worker]
) -> None:
    deployment, worker = start_worker(tmp_path, workers)
    async with Kafka(deployment) as kafka:
        # Garbage on internal topics: a bug elsewhere or a hand-written record must not stop the agents.
        await kafka.publish("pushstream.user-events", [b"\x00garbage", {"events": [{"kind": "device"}]}])
        await kafka.publish("pushstream.intents", [{"notification": {"id": "x"}}])
        await kafka.publish("pushstream.devices", [{"type": "register", "app_id": "demo", "user_id": "u-1",
                                                     "device_id": "d-1", "platform": "fcm", "token": "t-1"}])
        letters = await kafka.read_json("pushstream.dlq", until=lambda ls: len(ls) >= 3)
        assert sorted((letter["reason"], letter["topic"]) for letter in letters) == sorted([
            ("internal_error", deployment.topic("pushstream.user-events")),
            ("internal_error", deployment.topic("pushstream.user-events")),
            ("internal_error", deployment.topic("pushstream.intents")),
        ])
        wait_for(lambda: len(worker.get("/v1/apps/demo/users/u-1/devices").json()["devices"]) == 1,
                 timeout=30, what="the registry still processes registrations")
    assert worker.alive()
