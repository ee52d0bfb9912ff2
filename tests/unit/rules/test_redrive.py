"""rules.redrive: which dead letters are re-sent, grouped how, as which batch. Pure, no Kafka."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from pushstream.models import DeliveryBatch
from pushstream.rules.redrive import (
    FILTERED,
    NOT_A_DELIVERY,
    REDRIVEN,
    Source,
    choose,
    reason_matches,
    redrive_batch,
    redrive_batch_id,
)

TOPICS = frozenset({"p.pushstream.deliveries.apns.bulk", "p.pushstream.retry.apns.bulk.10s"})


def letter(reason: str = "retries_exhausted:ServiceUnavailable", *, topic: str = "p.pushstream.retry.apns.bulk.10s",
           partition: Any = 2, offset: Any = 17, at: str = "2026-12-01T10:00:00.000Z",
           value: Any = None) -> dict[str, Any]:
    if value is None:
        value = {"notification_id": "n-1", "app_id": "demo", "platform": "apns", "attempt": 2,
                 "item": {"user_id": "u-1", "device_id": "d-1", "token": "<redacted>", "payload": {}},
                 "token_fingerprint": "f"}
    return {"reason": reason, "detail": "", "topic": topic, "partition": partition, "offset": offset, "at": at,
            "key": "u-1", "value": value if isinstance(value, str) else orjson.dumps(value).decode(),
            "value_encoding": "utf-8"}


@pytest.mark.parametrize(("reason", "wanted", "match"), [
    ("retries_exhausted:X", None, True), ("retries_exhausted:X", "retries_exhausted", True),
    ("retries_exhausted:X", "retries_exhausted:X", True), ("retries_exhausted:X", "retries_exhausted:Y", False),
    ("retries_exhausted:X", "retries", False), ("bad_json", "bad_json", True), ("bad_json", "failed", False)])
def test_reason_filter(reason: str, wanted: str | None, match: bool) -> None:
    assert reason_matches(reason, wanted) is match


def test_a_senders_dead_letter_is_redriven_from_its_source() -> None:
    choice = choose(letter(), delivery_topics=TOPICS)
    assert choice.kind == REDRIVEN
    assert choice.source == Source("p.pushstream.retry.apns.bulk.10s", 2, 17)
    assert (choice.user_id, choice.device_id) == ("u-1", "d-1")


@pytest.mark.parametrize("bad", [
    letter(topic="p.pushstream.devices"),  # malformed input
    letter(topic="p.pushstream.intents"),  # the router's platform_not_configured
    letter(partition=None), letter(offset=None), letter(offset="17"),
    letter(value="not json"), letter(value=[1, 2]), letter(value={"item": "x"}),
    letter(value={"item": {"user_id": "u-1"}}), letter(value={"notification_id": "n"}),
    {**letter(), "value_encoding": "base64"}, {**letter(), "value": 5}, {**letter(), "value": None}, {},
    {"reason": None},
])
def test_anything_else_is_left_alone(bad: dict[str, Any]) -> None:
    assert choose(bad, delivery_topics=TOPICS).kind == NOT_A_DELIVERY


def test_filters_by_reason_and_time() -> None:
    since = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    assert choose(letter(), delivery_topics=TOPICS, reason="failed").kind == FILTERED
    assert choose(letter(), delivery_topics=TOPICS, reason="retries_exhausted").kind == REDRIVEN
    assert choose(letter(at="2026-12-01T09:59:59.999Z"), delivery_topics=TOPICS, since=since).kind == FILTERED
    assert choose(letter(at="2026-12-01T10:00:00.000Z"), delivery_topics=TOPICS, since=since).kind == REDRIVEN
    assert choose(letter(at="garbage"), delivery_topics=TOPICS, since=since).kind == FILTERED
    assert choose(letter(at="2026-12-01T11:00:00"), delivery_topics=TOPICS, since=since).kind == REDRIVEN  # naive: UTC


def source_batch() -> dict[str, Any]:
    items = [{"user_id": f"u-{i}", "device_id": f"d-{i}", "token": f"{i:02x}" * 32, "payload": {"aps": {}}}
             for i in range(4)]
    return DeliveryBatch(notification_id="n-1", app_id="demo", platform="apns", channel="marketing",
                         priority="normal", items=items, attempt=2, not_before=123.0, batch_id="o/0/0/apns/0/a2",
                         expires_at=999.0, received_at=5.0).asdict()


def test_the_batch_resends_the_chosen_devices_with_their_addresses_from_the_start() -> None:
    source = Source("t", 1, 9)
    built = redrive_batch(source_batch(), source, "retries_exhausted:X", {("u-1", "d-1"), ("u-3", "d-3")})
    assert built is not None
    batch = DeliveryBatch(**built)
    assert [i["device_id"] for i in batch.items] == ["d-1", "d-3"]
    assert batch.items[0]["token"] == "01" * 32  # the address the dead letter no longer has
    assert (batch.attempt, batch.not_before, batch.expires_at, batch.received_at) == (1, None, 999.0, 5.0)
    assert batch.batch_id == redrive_batch_id(source, "retries_exhausted:X") == "redrive/t:1:9/retries_exhausted:X"


def test_the_batch_id_is_the_same_every_run_and_differs_per_source_and_reason() -> None:
    devices = {("u-1", "d-1")}
    ids = {redrive_batch(source_batch(), Source(t, p, o), r, devices)["batch_id"]  # type: ignore[index]
           for t, p, o, r in [("t", 1, 9, "a"), ("t", 1, 9, "a"), ("t", 1, 10, "a"), ("t", 2, 9, "a"),
                              ("u", 1, 9, "a"), ("t", 1, 9, "b")]}
    assert len(ids) == 5


def test_no_batch_when_the_source_lacks_the_devices() -> None:
    assert redrive_batch(source_batch(), Source("t", 1, 9), "r", {("u-9", "d-9")}) is None
    assert redrive_batch(source_batch(), Source("t", 1, 9), "r", {("u-1", "d-2")}) is None
    assert redrive_batch({"items": None}, Source("t", 1, 9), "r", {("u-1", "d-1")}) is None


INTENTS = frozenset({"p.pushstream.intents", "p.pushstream.intents.bulk"})


def router_letter(reason: str = "platform_not_configured", value: Any = None, **kw: Any) -> dict[str, Any]:
    if value is None:
        value = {"notification_id": "n-1", "app_id": "demo", "user_id": "u-1", "device_id": "d-1",
                 "platform": "apns", "token_fingerprint": "f", "origin": "p.pushstream.notifications:0:3"}
    return letter(reason, topic="p.pushstream.intents.bulk", value=value, **kw)


def test_a_routers_dead_letter_is_routed_again_from_its_intent() -> None:
    from pushstream.rules.redrive import VIA_DELIVERY, VIA_INTENT

    choice = choose(router_letter(), delivery_topics=TOPICS, intent_topics=INTENTS)
    assert (choice.kind, choice.via) == (REDRIVEN, VIA_INTENT)
    assert (choice.user_id, choice.device_id) == ("u-1", "d-1")
    assert choose(letter(), delivery_topics=TOPICS, intent_topics=INTENTS).via == VIA_DELIVERY
    # Without the intents topics named, or without a device, it is left alone.
    assert choose(router_letter(), delivery_topics=TOPICS).kind == NOT_A_DELIVERY
    assert choose(router_letter(value={"notification_id": "n-1", "user_id": "u-1"}), delivery_topics=TOPICS,
                  intent_topics=INTENTS).kind == NOT_A_DELIVERY
    assert choose(router_letter(offset=None), delivery_topics=TOPICS, intent_topics=INTENTS).kind == NOT_A_DELIVERY


def test_the_intent_routes_just_the_devices_under_an_origin_of_its_own() -> None:
    from pushstream.models import IntentBatch
    from pushstream.rules.redrive import redrive_intent

    notification = {"id": "n-1", "app_id": "demo", "channel": "marketing", "title": "t"}
    source_intent = IntentBatch(notification=notification, broadcast=True, origin="o").asdict()
    source = Source("p.pushstream.intents.bulk", 3, 40)
    devices = {("u-2", "d-9"), ("u-1", "d-1"), ("u-1", "d-2")}
    built = redrive_intent(source_intent, source, "platform_not_configured", devices)
    assert built is not None
    intent = IntentBatch(**built)
    assert intent.notification == notification and intent.broadcast is False
    assert intent.user_ids == ["u-1", "u-2"] and intent.devices == {"u-1": ["d-1", "d-2"], "u-2": ["d-9"]}
    assert intent.origin == "redrive/p.pushstream.intents.bulk:3:40/platform_not_configured"
    assert redrive_intent(source_intent, source, "platform_not_configured", devices) == built  # every run
    assert redrive_intent({"notification": None}, source, "r", devices) is None
    assert redrive_intent(source_intent, source, "r", set()) is None
