"""`rules.outcome_records.poll_records`: every record a sender poll writes, its key and its partition."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from pushstream.models import DeliveryBatch, decode
from pushstream.models.internal import ProgressBatch, UserEvents
from pushstream.rules.keys import partition_for, user_key
from pushstream.rules.outcome_records import PollTopics, Record, SettledBatch, poll_records
from pushstream.rules.progress import progress_items_by_partition
from pushstream.rules.retry import RETRY_BANDS, band_for
from pushstream.rules.settle import Settlement

NOW = 1_700_000_000.0
TOPICS = PollTopics(
    status="p.status", status_partitions=12, dlq="p.dlq", sent="p.sent", sent_partitions=4, progress="p.progress",
    user_events="p.user-events", user_partitions=8,
    retry={(platform, band): (f"p.retry.{platform}.{band}", 3 + band % 5)
           for platform in ("apns", "fcm", "webpush") for band in RETRY_BANDS})


def batch(notification_id: str = "n-1", platform: str = "fcm", users: tuple[str, ...] = ("u-1",),
          **fields: Any) -> DeliveryBatch:
    items = [{"user_id": u, "device_id": f"{u}-d{k}", "token": f"t-{u}-{k}", "payload": {}}
             for u in users for k in range(2)]
    return DeliveryBatch(notification_id=notification_id, app_id="demo", platform=platform, channel="marketing",
                         priority="normal", items=items, batch_id=f"{notification_id}/0/{platform}/0", **fields)


def status(user_id: str, device_id: str, notification_id: str = "n-1", state: str = "delivered") -> dict[str, Any]:
    return {"notification_id": notification_id, "app_id": "demo", "user_id": user_id, "device_id": device_id,
            "platform": "fcm", "status": state, "at": "2026-01-04T10:00:00Z", "reason": None}


def settled(outcome: Settlement, delivery: DeliveryBatch | None = None, *, topic: str = "p.deliveries.fcm.bulk",
            partition: int = 5, offset: int = 77) -> SettledBatch:
    delivery = delivery or batch()
    return SettledBatch(topic, partition, offset, delivery.batch_id or "", delivery, outcome)


def of_topic(records: list[Record], topic: str) -> list[Record]:
    return [r for r in records if r[0] == topic]


def test_an_empty_poll_writes_nothing() -> None:
    assert poll_records([], TOPICS, now=NOW) == []


def test_statuses_are_keyed_and_partitioned_by_user_and_a_users_devices_share_them() -> None:
    statuses = [status(u, f"{u}-d{k}") for u in ("u-1", "u-2", "u-3") for k in range(3)]
    records = poll_records([settled(Settlement(statuses=statuses))], TOPICS, now=NOW)
    written = of_topic(records, "p.status")
    assert [orjson.loads(value) for _, _, value, _ in written] == statuses  # one per device, in order
    for _, key, value, partition in written:
        user_id = orjson.loads(value)["user_id"]
        assert key == user_id.encode() and partition == partition_for(user_id, 12)
    assert len({(k, p) for _, k, _, p in written}) == 3


def test_every_batch_writes_its_sent_memory_entry_on_the_partition_of_its_source() -> None:
    first, second = batch("n-1"), batch("n-2")
    records = poll_records([settled(Settlement(), first, partition=6), settled(Settlement(), second, partition=3)],
                           TOPICS, now=NOW)
    assert of_topic(records, "p.sent") == [("p.sent", b"n-1/0/fcm/0", b"1", 6 % 4), ("p.sent", b"n-2/0/fcm/0", b"1", 3)]


@pytest.mark.parametrize("band", RETRY_BANDS)
def test_a_retry_waits_in_the_band_settle_chose(band: int) -> None:
    retry = batch(attempt=2, not_before=NOW + 0.5)
    records = poll_records([settled(Settlement(retry=retry, retry_band=band))], TOPICS, now=NOW)
    name, partitions = TOPICS.retry[("fcm", band)]
    [(_, key, value, partition)] = of_topic(records, name)
    assert key == b"demo/n-1" and partition == partition_for("demo/n-1", partitions)
    assert decode(DeliveryBatch, value) == retry


def test_a_retry_without_a_band_waits_in_the_first() -> None:
    records = poll_records([settled(Settlement(retry=batch(attempt=2)))], TOPICS, now=NOW)
    assert len(of_topic(records, TOPICS.retry[("fcm", RETRY_BANDS[0])][0])) == 1


@pytest.mark.parametrize("wait", [-5.0, 0.0, 0.5, 1.0, 1.01, 9.0, 59.0, 61.0, 599.0, 3000.0, 90_000.0])
def test_a_held_batch_waits_in_the_band_of_its_remaining_hold(wait: float) -> None:
    held = batch(not_before=NOW + wait)
    records = poll_records([settled(Settlement(held=held))], TOPICS, now=NOW)
    name, partitions = TOPICS.retry[("fcm", band_for(max(0.0, wait)))]
    [(_, key, value, partition)] = of_topic(records, name)
    assert key == b"demo/n-1" and partition == partition_for("demo/n-1", partitions)
    assert decode(DeliveryBatch, value) == held


def test_a_held_batch_without_a_due_time_waits_in_the_first_band() -> None:
    records = poll_records([settled(Settlement(held=batch()))], TOPICS, now=NOW)
    assert len(of_topic(records, TOPICS.retry[("fcm", RETRY_BANDS[0])][0])) == 1


def test_a_batch_can_write_a_retry_and_a_held_batch_each_on_its_platforms_topics() -> None:
    retry, held = batch(platform="apns", attempt=1), batch(platform="apns", not_before=NOW + 30)
    records = poll_records([settled(Settlement(retry=retry, retry_band=600, held=held))], TOPICS, now=NOW)
    assert len(of_topic(records, TOPICS.retry[("apns", 600)][0])) == 1
    assert len(of_topic(records, TOPICS.retry[("apns", 60)][0])) == 1


def test_dead_letters_name_the_source_record_and_keep_the_redacted_value() -> None:
    value = {"notification_id": "n-1", "app_id": "demo", "platform": "fcm", "item": {"device_id": "d-1"}}
    outcome = Settlement(dead_letters=[("u-1", "BadDeviceToken", "bad token", value),
                                       ("u-2", "retries_exhausted:Unavailable", "", value)])
    records = poll_records([settled(outcome, topic="p.retry.fcm.bulk.60s", partition=2, offset=913)], TOPICS,
                           now=NOW)
    letters = of_topic(records, "p.dlq")
    assert [(key, partition) for _, key, _, partition in letters] == [(b"u-1", None), (b"u-2", None)]
    first, second = (orjson.loads(v) for _, _, v, _ in letters)
    assert (first["topic"], first["partition"], first["offset"]) == ("p.retry.fcm.bulk.60s", 2, 913)
    assert (first["reason"], first["detail"], first["key"]) == ("BadDeviceToken", "bad token", "u-1")
    assert orjson.loads(first["value"]) == value
    assert (second["reason"], second["offset"]) == ("retries_exhausted:Unavailable", 913)


def deactivation(user_id: str) -> dict[str, Any]:
    return {"kind": "deactivate", "app_id": "demo", "user_id": user_id, "device_id": "d-1", "fingerprint": "fp",
            "reason": "apns:Unregistered", "at": "t"}


def test_the_polls_deactivations_are_one_user_events_record_per_user_partition() -> None:
    users = [f"u-{k}" for k in range(20)]
    outcomes = [Settlement(deactivations=[deactivation(u) for u in users[:10]]),
                Settlement(deactivations=[deactivation(u) for u in users[10:]])]
    records = poll_records([settled(o, batch(f"n-{k}")) for k, o in enumerate(outcomes)], TOPICS, now=NOW)
    written = of_topic(records, "p.user-events")
    assert len({p for *_, p in written}) == len(written)  # one record per partition
    seen = Counter[str]()
    for _, key, value, partition in written:
        assert key == f"user-events/{partition}".encode()
        for event in decode(UserEvents, value).events:
            assert partition_for(user_key("demo", event["user_id"]), 8) == partition
            seen[event["user_id"]] += 1
    assert seen == Counter(users)


def test_the_polls_statuses_are_its_progress_one_record_per_progress_partition() -> None:
    first = [status("u-1", "d-1", "n-1"), status("u-1", "d-2", "n-1")]
    second = [status("u-2", "d-3", "n-2", "retrying")]
    records = poll_records([settled(Settlement(statuses=first), batch("n-1")),
                            settled(Settlement(statuses=second), batch("n-2"))], TOPICS, now=NOW)
    expected = progress_items_by_partition([*first, *second], 8)
    written = of_topic(records, "p.progress")
    assert {p: decode(ProgressBatch, v).items for _, _, v, p in written} == expected
    assert all(key == f"progress/{p}".encode() for _, key, _, p in written)


def test_records_come_batch_by_batch_then_user_events_then_progress() -> None:
    outcome = Settlement(statuses=[status("u-1", "d-1")], retry=batch(attempt=2), retry_band=10,
                         held=batch(not_before=NOW), deactivations=[deactivation("u-1")],
                         dead_letters=[("u-1", "BadDeviceToken", "", {})])
    records = poll_records([settled(outcome, batch("n-1")), settled(Settlement(), batch("n-2"))], TOPICS, now=NOW)
    assert [topic for topic, *_ in records] == [
        "p.status", TOPICS.retry[("fcm", 10)][0], TOPICS.retry[("fcm", 1)][0], "p.dlq", "p.sent", "p.sent",
        "p.user-events", "p.progress"]
