"""Every path that writes a DLQ record: reason, source topic, partition and offset, and never a raw token or
Web Push subscription keys (issue 9 §6). One redaction rule, `pushstream.models.redact`, behind all of them."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from pushstream.agents.ingest import rekey_batch
from pushstream.agents.io import Context, Outbox
from pushstream.agents.planner import plan_batch
from pushstream.agents.router import route_event
from pushstream.agents.senders import SenderService
from pushstream.models import DeliveryBatch, UserEvents, encode
from pushstream.models.dlq import DeadLetter, dead_letter
from pushstream.models.inputs import decode_device
from pushstream.models.redact import redact, redact_bytes, redact_text
from pushstream.providers.outcome import Action, Verdict
from pushstream.rules.keys import token_fingerprint
from pushstream.rules.outcome_records import SettledBatch, poll_records
from pushstream.rules.settle import RetryPolicy, settle
from pushstream.topology import load_layout
from tests.unit.factories import APNS_TOKEN, AUTH, FCM_TOKEN, P256DH, WEBPUSH_ENDPOINT, device, settings, subscription
from tests.unit.router_fakes import FakeTopic, GatedOutbox, context, event

SECRETS = (APNS_TOKEN, FCM_TOKEN, P256DH, AUTH, "/wpush/v2/abc")
ROOT = Path(__file__).resolve().parents[2]


def assert_no_secret(raw: bytes | str) -> None:
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text[:300]!r}"


def letter_of(value: bytes | DeadLetter) -> dict[str, Any]:
    letter = value.asdict() if isinstance(value, DeadLetter) else orjson.loads(value)
    assert letter["reason"] and letter["topic"]
    assert isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
    raw = base64.b64decode(letter["value"]) if letter["value_encoding"] == "base64" else letter["value"].encode()
    assert_no_secret(raw)
    assert_no_secret(letter["detail"])
    return letter


# The rule ---------------------------------------------------------------------------------------------------
def test_tokens_become_their_fingerprint_and_subscriptions_their_origin() -> None:
    events = {"events": [
        {"kind": "device", "platform": "apns", "token": APNS_TOKEN, "user_id": "u-1"},
        {"kind": "device", "platform": "fcm", "token": FCM_TOKEN},
        {"kind": "device", "platform": "webpush", "subscription": subscription()},
    ]}
    out = redact(events)
    apns, fcm, web = out["events"]
    assert apns == {"kind": "device", "platform": "apns", "token": f"redacted:{token_fingerprint('apns', APNS_TOKEN)}",
                    "user_id": "u-1"}
    assert fcm["token"] == f"redacted:{token_fingerprint('fcm', FCM_TOKEN)}"
    assert web["subscription"] == {"endpoint": "https://updates.push.services.mozilla.com",
                                   "redacted": token_fingerprint("webpush", WEBPUSH_ENDPOINT)}
    assert_no_secret(orjson.dumps(out))
    assert redact(out) == out  # idempotent


def test_delivery_items_take_the_batch_platform_for_the_fingerprint() -> None:
    batch = {"platform": "fcm", "items": [{"user_id": "u-1", "token": FCM_TOKEN, "payload": {"x": 1}}]}
    [item] = redact(batch)["items"]
    assert item == {"user_id": "u-1", "token": f"redacted:{token_fingerprint('fcm', FCM_TOKEN)}", "payload": {"x": 1}}


@pytest.mark.parametrize("subscription_value", [
    "https://push.example/abc", ["x"], {"keys": {"p256dh": P256DH, "auth": AUTH}}, {"endpoint": 5}])
def test_malformed_subscriptions_are_redacted_too(subscription_value: Any) -> None:
    out = redact({"platform": "webpush", "subscription": subscription_value, "keys": {"p256dh": P256DH}})
    assert_no_secret(orjson.dumps(out))
    assert "abc" not in orjson.dumps(out["subscription"]).decode()


def test_unchanged_values_keep_their_original_bytes() -> None:
    raw = b'{"type": "register",   "user_id": "u-1"}'
    assert redact_bytes(raw) == raw


@pytest.mark.parametrize("raw", [
    b'{"type":"register","token":"' + APNS_TOKEN.encode() + b'" broken',
    b"\xff\xfe token=" + FCM_TOKEN.encode() + b" binary",
    b"{'subscription': {'endpoint': '" + WEBPUSH_ENDPOINT.encode() + b"', 'keys': {'p256dh': '" + P256DH.encode()
    + b"', 'auth': '" + AUTH.encode() + b"'}}",
])
def test_values_that_are_not_json_are_redacted_as_text(raw: bytes) -> None:
    out = redact_bytes(raw)
    assert_no_secret(out)
    assert b"redacted" in out


def test_text_redaction() -> None:
    assert redact_text(f"KeyError in {{'token': '{APNS_TOKEN}'}}") == "KeyError in {'token': \"redacted\"}"
    assert redact_text(f'"endpoint": "{WEBPUSH_ENDPOINT}"') == '"endpoint": "https://updates.push.services.mozilla.com/..."'
    assert redact_text("nothing here") == "nothing here"


def test_dead_letter_redacts_value_and_detail_and_keeps_the_coordinates() -> None:
    value = orjson.dumps({"platform": "apns", "token": APNS_TOKEN})
    letter = dead_letter("bad", f"token={APNS_TOKEN}", topic="t", partition=2, offset=9, key=b"u-1", value=value)
    out = letter_of(letter)
    assert (out["reason"], out["topic"], out["partition"], out["offset"], out["key"]) == ("bad", "t", 2, 9, "u-1")


# Ingest (and planner: the same Outbox.dead_letter) ----------------------------------------------------------
def outbox_ctx(sent: list[tuple[Any, ...]] | None = None) -> Any:
    async def send(*args: Any) -> asyncio.Future[None]:
        assert sent is not None
        sent.append(args)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    app: Any = SimpleNamespace(producer=SimpleNamespace(send=send))  # stands in for the Faust app and runtime
    rt: Any = SimpleNamespace(settings=settings(), hooks={})
    return Context(app=app, rt=rt,
                   topics=SimpleNamespace(dlq=FakeTopic("dlq")), tables=None)  # type: ignore[arg-type]


def message_event(value: bytes, offset: int, topic: str = "devices") -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=3, offset=offset, key=b"u-1", value=value,
                                                   timestamp=1_700_000_000.0), value=value)


def test_ingest_dead_letters_carry_coordinates_and_no_address() -> None:
    bad = [
        orjson.dumps({"type": "register", "app_id": "demo", "user_id": "u-1", "device_id": "d",
                      "platform": "blackberry", "token": APNS_TOKEN}),
        orjson.dumps({"type": "register", "app_id": "demo", "device_id": "d", "platform": "webpush",
                      "subscription": subscription()}),
        b'{"type": "register", "token": "' + FCM_TOKEN.encode() + b'"',
    ]
    outbox = Outbox(outbox_ctx())
    good = rekey_batch([message_event(v, i) for i, v in enumerate(bad)], "device", decode_device, settings(),
                       outbox)
    assert good == []
    letters = [letter_of(value) for topic, _key, value, _p in outbox._pending]
    assert [(lt["topic"], lt["partition"], lt["offset"]) for lt in letters] == [("devices", 3, 0), ("devices", 3, 1),
                                                                                ("devices", 3, 2)]
    assert [lt["reason"] for lt in letters] == ["unknown_platform", "missing_field", "bad_json"]


def test_planner_dead_letters_carry_coordinates_and_no_address() -> None:
    ctx = outbox_ctx()
    outbox = Outbox(ctx)
    bad = [orjson.dumps({"id": "n-1", "app_id": "demo", "title": "t", "target": {"user_ids": "u-1"},
                         "data": {"token": FCM_TOKEN}}),
           b"{broken " + APNS_TOKEN.encode()]
    plan_batch(ctx, [message_event(v, 5 + i, "notifications") for i, v in enumerate(bad)], outbox)
    letters = [letter_of(value) for _topic, _key, value, _p in outbox._pending]
    assert [(lt["reason"], lt["topic"], lt["partition"], lt["offset"]) for lt in letters] == [
        ("bad_target", "notifications", 3, 5), ("bad_json", "notifications", 3, 6)]


# Registry (and every agent batch): the guard's internal_error dead letter -----------------------------------
async def test_a_failed_registry_batch_is_dead_lettered_without_its_tokens() -> None:
    sent: list[tuple[Any, ...]] = []
    ctx = outbox_ctx(sent)
    batch = UserEvents(events=[{"kind": "device", "type": "register", "platform": "apns", "token": APNS_TOKEN},
                               {"kind": "device", "type": "register", "platform": "webpush",
                                "subscription": subscription()}])

    async def work() -> None:
        raise KeyError(f"token {APNS_TOKEN!r}")

    await ctx.guarded("registry", [message_event(encode(batch), 41, "user-events")], work)
    [(topic, _key, value, *_)] = sent
    letter = letter_of(value)
    assert (topic, letter["reason"], letter["topic"], letter["offset"]) == ("dlq", "internal_error", "user-events", 41)


# Router: platform_not_configured and payload_too_large ------------------------------------------------------
@pytest.mark.parametrize(("platform", "dev", "reason", "body"), [
    ("apns", device("d-1", "apns"), "platform_not_configured", "Body"),
    ("webpush", device("d-1", "webpush"), "platform_not_configured", "Body"),
    ("fcm", device("d-1", "fcm"), "payload_too_large", "x" * 5000),
])
async def test_router_dead_letters_every_undeliverable_device(platform: str, dev: dict[str, Any], reason: str,
                                                              body: str) -> None:
    outbox = GatedOutbox(None, [], "transactional")
    configured: dict[str, Any] = {"apns": False, "fcm": True, "webpush": False}
    ctx, tp = context([outbox], settings(**configured), devices={"d-1": dev})
    await route_event(ctx, event(tp, 77, id="n-1", body=body))
    statuses = [v for topic, _k, v in outbox.records if topic == "status"]
    assert [(s.status, s.reason) for s in statuses] == [("dead_lettered", reason)]
    assert_no_secret(encode(statuses[0]))
    [(key, letter)] = [(k, v) for topic, k, v in outbox.records if topic == "dlq"]
    out = letter_of(letter)
    assert (key, out["reason"], out["topic"], out["partition"], out["offset"]) == ("u-1", reason, "intents", 0, 77)
    value = orjson.loads(out["value"])
    assert value["notification_id"] == "n-1" and value["device_id"] == "d-1" and value["platform"] == platform
    assert value["token_fingerprint"] == dev["fingerprint"]


# Senders: settled dead letters and undecodable batches ------------------------------------------------------
def sender() -> SenderService:
    return SenderService(settings(), load_layout(ROOT / "topics.yaml"), "transactional", platforms=["fcm"])


def delivery(platform: str = "fcm") -> DeliveryBatch:
    item = ({"subscription": subscription()} if platform == "webpush" else
            {"token": APNS_TOKEN if platform == "apns" else FCM_TOKEN})
    return DeliveryBatch(notification_id="n-1", app_id="demo", platform=platform, channel="transactional",
                         priority="high", items=[{"user_id": "u-1", "device_id": "d-1", "payload": {}, **item}],
                         batch_id="o/0/0/fcm/0")


@pytest.mark.parametrize("platform", ["apns", "fcm", "webpush"])
@pytest.mark.parametrize("verdict", [None, Verdict(Action.FAILED, "BadDeviceToken", 400, detail=f"token {APNS_TOKEN}"),
                                     Verdict(Action.FATAL_CONFIG, "InvalidProviderToken", 403)])
def test_sender_dead_letters_from_settled_batches(platform: str, verdict: Verdict | None) -> None:
    batch = delivery(platform)
    outcome = settle(batch, [verdict], now=0.0, at="t", policy=RetryPolicy(3, 1.0, 10.0))
    for status in outcome.statuses:
        assert_no_secret(orjson.dumps(status))
    settled = SettledBatch("deliveries.fcm", 5, 123, "o/0/0/fcm/0", batch, outcome)
    records = poll_records([settled], sender().poll_topics, now=0.0)
    [letter] = [letter_of(value) for topic, _k, value, _p in records if topic == "pushstream.dlq"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("deliveries.fcm", 5, 123)
    assert letter["reason"] == (verdict.reason if verdict is not None else "platform_not_configured")


@pytest.mark.parametrize("platform", ["apns", "fcm", "webpush"])
def test_an_undecodable_delivery_batch_is_dead_lettered_without_addresses(platform: str) -> None:
    raw = orjson.dumps({**delivery(platform).asdict(), "items": "corrupt", "extra": delivery(platform).items})
    tp = TopicPartition("deliveries.fcm", 1)
    _topic, _key, value, _p = sender()._dead_letter_record(tp, SimpleNamespace(offset=8, key=b"k", value=raw),
                                                           "internal_error", "TypeError()")
    letter = letter_of(value)
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("deliveries.fcm", 1, 8)
