"""Bad input never crashes a worker and is never dropped: 1,000 malformed records interleaved with valid
ones all reach the DLQ with a reason and their origin, and every valid record is processed."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from pushstream.models.redact import redact_bytes
from tests.integration.harness import OTHER_KEY, Deployment, Kafka, Worker, make_deployment, wait_for
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
    worker = Worker(deployment, "w1", role="router").start()
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
        # The originals, device addresses redacted (the one rule every dead letter goes through).
        originals = {redact_bytes(bytes(r) if isinstance(r, bytes) else orjson.dumps(r)) for r in records}
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


SECRET_APNS = "5e" * 32
SECRET_FCM = "fcm-secret-registration-token:APA91b-must-never-leave"
SECRET_P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
SECRET_AUTH = "tBHItJI5svbpez7KI4CCXg"


def assert_no_address(raw: bytes) -> None:
    for secret in (SECRET_APNS, SECRET_FCM, SECRET_P256DH, SECRET_AUTH, "/secret-path"):
        assert secret.encode() not in raw, raw[:300]


async def test_an_unconfigured_platform_and_malformed_records_reach_the_dlq_with_coordinates_and_no_token(
    tmp_path: Path, workers: list[Worker]
) -> None:
    deployment, worker = start_worker(tmp_path, workers)
    async with Kafka(deployment) as kafka:
        await kafka.publish("pushstream.devices", [
            # app "other" has no provider section: a valid registration, undeliverable
            {"type": "register", "app_id": "other", "user_id": "u-9", "device_id": "phone", "platform": "fcm",
             "token": SECRET_FCM},
            # malformed: unknown platform, and a Web Push registration without its user
            {"type": "register", "app_id": "demo", "user_id": "u-8", "device_id": "d", "platform": "blackberry",
             "token": SECRET_APNS},
            {"type": "register", "app_id": "demo", "device_id": "d", "platform": "webpush",
             "subscription": {"endpoint": "https://push.example.org/secret-path",
                              "keys": {"p256dh": SECRET_P256DH, "auth": SECRET_AUTH}}},
        ])
        wait_for(lambda: len(worker.get("/v1/apps/other/users/u-9/devices", api_key=OTHER_KEY).json()["devices"]) == 1,
                 timeout=60, what="the registration of other/u-9")
        await kafka.publish("pushstream.notifications", [
            {"id": "n-nowhere", "app_id": "other", "title": "hi", "target": {"user_ids": ["u-9"]}}])
        dead = await kafka.read("pushstream.dlq", until=lambda rs: len(rs) >= 3, settle=1.0)
        statuses = await kafka.read("pushstream.status", until=lambda rs: len(rs) >= 1)
    letters = {}
    for record in dead:
        assert_no_address(record.value)
        letter = orjson.loads(record.value)
        assert letter["partition"] is not None and letter["offset"] is not None
        letters[letter["reason"]] = letter
    assert set(letters) == {"unknown_platform", "missing_field", "platform_not_configured"}
    assert letters["unknown_platform"]["topic"] == letters["missing_field"]["topic"] == deployment.topic(
        "pushstream.devices")
    unconfigured = letters["platform_not_configured"]
    assert unconfigured["topic"] == deployment.topic("pushstream.intents")
    value = orjson.loads(unconfigured["value"])
    assert (value["notification_id"], value["user_id"], value["device_id"], value["platform"]) == (
        "n-nowhere", "u-9", "phone", "fcm")
    assert value["token_fingerprint"]
    for record in statuses:
        assert_no_address(record.value)
    [status] = [orjson.loads(r.value) for r in statuses]
    assert (status["status"], status["reason"]) == ("dead_lettered", "platform_not_configured")
    assert worker.alive()
