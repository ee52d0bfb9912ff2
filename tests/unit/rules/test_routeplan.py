"""`rules.routeplan`: what one routing step writes, from each user's fan-out, and its chunked delivery batches."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from pushstream.models import IntentBatch
from pushstream.models.status import Status
from pushstream.models.values import DeliveryItem
from pushstream.rules.fanout import UserFanOut
from pushstream.rules.keys import user_key
from pushstream.rules.routeplan import RoutePlan, delivery_batches
from tests.unit.factories import device, notification

AT = "2026-01-04T10:00:00Z"
PAYLOAD = {"aps": {"alert": "hi"}}


def item(user_id: str, device_id: str, payload: Any = PAYLOAD) -> DeliveryItem:
    return {"user_id": user_id, "device_id": device_id, "token": f"t-{device_id}", "payload": payload}


def plan(**n: Any) -> RoutePlan:
    return RoutePlan(notification(id="n-1", **n), at=AT, origin="notifications:0:7")


def test_delivered_devices_queue_per_platform_and_variant_in_user_order() -> None:
    p = plan()
    p.add("u-1", None, UserFanOut(deliveries={"apns": [item("u-1", "a")], "fcm": [item("u-1", "f")]}), {})
    p.add("u-2", None, UserFanOut(deliveries={"apns": [item("u-2", "b"), item("u-2", "c")]}), {})
    p.add("u-3", "B", UserFanOut(deliveries={"apns": [item("u-3", "d")]}), {})
    assert {k: [i["device_id"] for i in v] for k, v in p.batches.items()} == {
        ("apns", None): ["a", "b", "c"], ("fcm", None): ["f"], ("apns", "B"): ["d"]}
    assert p.statuses == [] and p.progress == [] and p.undeliverable == [] and p.schedules == [] and not p.tally


def test_adding_a_user_leaves_the_fan_out_as_it_was() -> None:
    result = UserFanOut(deliveries={"apns": [item("u-1", "a")]})
    p = plan()
    p.add("u-1", None, result, {})
    p.add("u-2", None, UserFanOut(deliveries={"apns": [item("u-2", "b")]}), {})
    assert [i["device_id"] for i in result.deliveries["apns"]] == ["a"]


def test_each_device_without_a_delivery_gets_a_status_a_progress_entry_and_a_tally() -> None:
    p = plan()
    p.add("u-1", "A", UserFanOut(outcomes=[("d-1", "apns", Status.SUPPRESSED, "opt_out"),
                                           ("d-2", "fcm", Status.DEFERRED, "quiet_hours")]), {})
    p.add("u-2", None, UserFanOut(outcomes=[("d-3", "apns", Status.SUPPRESSED, "opt_out")]), {})
    assert [(s.user_id, s.device_id, s.platform, s.status, s.reason, s.variant) for s in p.statuses] == [
        ("u-1", "d-1", "apns", "suppressed", "opt_out", "A"), ("u-1", "d-2", "fcm", "deferred", "quiet_hours", "A"),
        ("u-2", "d-3", "apns", "suppressed", "opt_out", None)]
    assert all((s.notification_id, s.app_id, s.at) == ("n-1", "demo", AT) for s in p.statuses)
    assert p.progress[0] == {"app_id": "demo", "notification_id": "n-1", "user_id": "u-1", "device_id": "d-1",
                             "status": "suppressed", "at": AT, "reason": "opt_out", "variant": "A"}
    assert [(e["user_id"], e["device_id"], e["status"]) for e in p.progress] == [
        ("u-1", "d-1", "suppressed"), ("u-1", "d-2", "deferred"), ("u-2", "d-3", "suppressed")]
    assert p.tally == {("apns", "suppressed", "opt_out"): 2, ("fcm", "deferred", "quiet_hours"): 1}
    assert p.undeliverable == []


def test_a_status_without_a_reason_tallies_under_the_empty_reason() -> None:
    p = plan()
    p.add("u-1", None, UserFanOut(outcomes=[("d-1", "apns", Status.SUPPRESSED, None)]), {})
    assert p.tally == {("apns", "suppressed", ""): 1}


def test_dead_lettered_devices_become_dead_letters_naming_the_source_and_the_device_fingerprint() -> None:
    iphone, pixel = device("d-1", "apns"), device("d-2", "fcm")
    p = plan()
    p.add("u-1", None, UserFanOut(outcomes=[("d-1", "apns", Status.DEAD_LETTERED, "platform_not_configured"),
                                            ("d-2", "fcm", Status.DEAD_LETTERED, None)]),
          {"d-1": iphone, "d-2": pixel})
    assert [(s.device_id, s.status) for s in p.statuses] == [("d-1", "dead_lettered"), ("d-2", "dead_lettered")]
    first, second = p.dead_letters(("p.intents", 3, 41))
    assert (first.topic, first.partition, first.offset, first.key) == ("p.intents", 3, 41, "u-1")
    assert (first.reason, second.reason) == ("platform_not_configured", "undeliverable")
    value = orjson.loads(first.value or "")
    assert value == {"notification_id": "n-1", "app_id": "demo", "user_id": "u-1", "device_id": "d-1",
                     "platform": "apns", "token_fingerprint": iphone["fingerprint"], "origin": "notifications:0:7"}
    assert str(iphone["token"]) not in (first.value or "")
    assert orjson.loads(second.value or "")["token_fingerprint"] == pixel["fingerprint"]


def test_a_dead_lettered_device_missing_from_the_registry_entry_still_gets_its_letter() -> None:
    p = plan()
    p.add("u-1", None, UserFanOut(outcomes=[("d-9", "webpush", Status.DEAD_LETTERED, "payload_too_large")]), {})
    [letter] = p.dead_letters(("p.intents", 0, None))
    assert letter.offset is None and orjson.loads(letter.value or "")["device_id"] == "d-9"


def test_quiet_hours_deferrals_are_one_schedule_command_per_user_for_just_the_deferred_devices() -> None:
    until = dt.datetime(2026, 1, 4, 7, 0, tzinfo=dt.UTC)
    p = plan()
    p.add("u-1", None, UserFanOut(outcomes=[("d-1", "apns", Status.DEFERRED, "quiet_hours")], deferred=["d-1"],
                                  deferred_until=until), {})
    p.add("u-2", None, UserFanOut(deliveries={"apns": [item("u-2", "d-2")]}), {})
    [(key, command)] = p.schedules
    assert key == user_key("demo", "u-1")
    [add] = command.commands
    assert (add["op"], add["due"], add["id"]) == ("add", until.timestamp(), "demo/n-1/u-1/quiet")
    later = IntentBatch(**add["intent"])
    assert later.user_ids == ["u-1"] and later.devices == {"u-1": ["d-1"]}
    assert later.origin == "notifications:0:7/quiet/u-1" and later.notification["id"] == "n-1"


def test_delivery_batches_are_chunked_with_ids_from_the_step() -> None:
    n = notification(id="n-1", received_at=1000.0, ttl=60, collapse_key="c")
    batches = {("apns", None): [item("u-1", f"a{k}") for k in range(5)], ("fcm", "B"): [item("u-2", "f")]}
    out = delivery_batches(n, batches, prefix="o/3/2", chunk=2)
    assert [(b.batch_id, [i["device_id"] for i in b.items]) for b in out] == [
        ("o/3/2/apns/0", ["a0", "a1"]), ("o/3/2/apns/1", ["a2", "a3"]), ("o/3/2/apns/2", ["a4"]),
        ("o/3/2/fcm/v:B/0", ["f"])]
    for b in out:
        assert (b.notification_id, b.app_id, b.channel, b.priority) == ("n-1", "demo", n["channel"], n["priority"])
        assert (b.expires_at, b.received_at, b.ttl, b.collapse_key) == (1060.0, 1000.0, 60, "c")
    assert [b.variant for b in out] == [None, None, None, "B"]


def test_delivery_batches_share_their_items_payloads() -> None:
    other = {"aps": {"alert": "hallo"}}
    out = delivery_batches(notification(id="n-1"), {("apns", None): [item("u-1", "a", PAYLOAD),
                                                                     item("u-1", "b", other),
                                                                     item("u-2", "c", PAYLOAD)]},
                           prefix="p", chunk=500)
    [batch] = out
    assert batch.payloads == [PAYLOAD, other]
    assert [i["p"] for i in batch.items] == [0, 1, 0] and all("payload" not in i for i in batch.items)


def test_a_notification_without_ttl_has_batches_that_never_expire() -> None:
    [batch] = delivery_batches(notification(id="n-1", ttl=None), {("fcm", None): [item("u-1", "f")]},
                               prefix="p", chunk=500)
    assert batch.expires_at is None and batch.ttl is None


def test_no_items_no_batches() -> None:
    assert delivery_batches(notification(id="n-1"), {}, prefix="p", chunk=500) == []
