"""WebPushSender against FakeWebPush (VAPID check, aes128gcm decryption), in-process."""

from __future__ import annotations

import asyncio
import time

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sender_fixtures import (  # noqa: F401  (fixtures are used by name)
    VAPID_SUBJECT,
    WebPushEnv,
    delivery_batch,
    dev_setup_fixture,
    webpush_fixture,
)

from pushstream.providers.outcome import Action, Sender
from pushstream.providers.webpush.client import VapidSigner, WebPushSender, load_vapid_key, origin_of, topic_for
from pushstream.providers.webpush.payload import MAX_PLAINTEXT_BYTES, build_webpush_payload
from pushstream.testing.fakes import DevSetup, FakeWebPush
from pushstream.testing.fakes.credentials import load_private_key


def item(env: WebPushEnv, sid: str, payload: dict | None = None) -> dict:
    payload = payload or build_webpush_payload({"id": "n-1", "data": {"order_id": "42"}}, "Grüße", "Arrives Tuesday")
    return {"user_id": "u-1", "device_id": sid, "subscription": env.fake.subscription(sid), "payload": payload}


def test_sender_satisfies_the_protocol(webpush: WebPushEnv) -> None:
    assert isinstance(webpush.sender, Sender)
    assert webpush.sender.platform == "webpush"


@pytest.mark.asyncio
async def test_decrypted_plaintext_and_headers(webpush: WebPushEnv) -> None:
    payload = build_webpush_payload({"id": "n-1", "data": {"order_id": "42"}, "collapse_key": "order-42"},
                                    "Grüße", "Arrives Tuesday")
    expires_at = time.time() + 600
    batch = delivery_batch("webpush", [item(webpush, "sub-1", payload)], expires_at=expires_at,
                           collapse_key="order-42", priority="high")

    [verdict] = await webpush.sender.send_batch(batch)

    assert (verdict.action, verdict.provider_status) == (Action.DELIVERED, 201)
    [record] = webpush.fake.records
    assert record.plaintext == orjson.dumps(payload)  # exactly what the service worker gets
    assert record.json == {"id": "n-1", "title": "Grüße", "body": "Arrives Tuesday", "data": {"order_id": "42"},
                           "tag": "order-42"}
    headers = record.headers
    assert headers["content-encoding"] == "aes128gcm"
    assert headers["urgency"] == "high" and headers["topic"] == "order-42"
    assert abs(int(headers["ttl"]) - 600) <= 1
    scheme, _, params = headers["authorization"].partition(" ")
    assert scheme == "vapid"
    token = dict(p.split("=", 1) for p in params.split(","))["t"]
    key = load_private_key(webpush.setup.vapid_private_key_file)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    claims = jwt.decode(token, key.public_key(), algorithms=["ES256"], audience=webpush.fake.origin)
    assert claims["sub"] == VAPID_SUBJECT
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600


@pytest.mark.asyncio
async def test_defaults_normal_urgency_and_four_weeks_ttl(webpush: WebPushEnv) -> None:
    batch = delivery_batch("webpush", [item(webpush, "sub-1")], expires_at=None, priority="normal")

    [verdict] = await webpush.sender.send_batch(batch)

    assert verdict.action is Action.DELIVERED
    headers = webpush.fake.records[0].headers
    assert (headers["urgency"], headers["ttl"]) == ("normal", str(28 * 24 * 3600))
    assert "topic" not in headers


@pytest.mark.asyncio
async def test_dead_subscriptions(webpush: WebPushEnv) -> None:
    webpush.fake.unregister("gone")
    webpush.fake.script("expired", 404)
    batch = delivery_batch("webpush", [item(webpush, "sub-1"), item(webpush, "gone"), item(webpush, "expired")])

    ok, gone, expired = await webpush.sender.send_batch(batch)

    assert ok.action is Action.DELIVERED
    assert (gone.action, gone.provider_status, gone.reason) == (Action.INVALID_TOKEN, 410, "http_410")
    assert (expired.action, expired.provider_status) == (Action.INVALID_TOKEN, 404)


@pytest.mark.asyncio
async def test_429_with_retry_after(webpush: WebPushEnv) -> None:
    webpush.fake.script("busy", 429, retry_after=42)

    [verdict] = await webpush.sender.send_batch(delivery_batch("webpush", [item(webpush, "busy")]))

    assert (verdict.action, verdict.provider_status, verdict.retry_after) == (Action.RETRY, 429, 42.0)


@pytest.mark.asyncio
async def test_oversize_plaintext_fails_without_a_request(webpush: WebPushEnv) -> None:
    fits = {"body": "x" * (MAX_PLAINTEXT_BYTES - len(orjson.dumps({"body": ""})))}
    too_big = {"body": fits["body"] + "x"}
    batch = delivery_batch("webpush", [item(webpush, "sub-1", fits), item(webpush, "sub-2", too_big)])

    fitting, oversize = await webpush.sender.send_batch(batch)

    assert fitting.action is Action.DELIVERED  # exactly 3993 bytes: a 4096-byte body
    assert (oversize.action, oversize.reason) == (Action.FAILED, "payload_too_large")
    assert [r.key for r in webpush.fake.records] == ["sub-1"]


@pytest.mark.asyncio
async def test_vapid_header_signed_once_per_origin(webpush: WebPushEnv, dev_setup: DevSetup) -> None:
    other = FakeWebPush(dev_setup)
    await other.start()
    try:
        signed_before = webpush.sender.signer.signed
        items = [item(webpush, f"sub-{i}") for i in range(20)]
        items += [{"device_id": f"o-{i}", "subscription": other.subscription(f"o-{i}"),
                   "payload": {"id": "n-1"}} for i in range(5)]

        verdicts = await webpush.sender.send_batch(delivery_batch("webpush", items))
    finally:
        await other.stop()

    assert all(v.action is Action.DELIVERED for v in verdicts)
    assert webpush.sender.signer.signed == signed_before + 2  # one per origin, not per message
    assert len({r.headers["authorization"] for r in webpush.fake.records}) == 1
    assert len({r.headers["authorization"] for r in other.records}) == 1
    assert webpush.fake.records[0].headers["authorization"] != other.records[0].headers["authorization"]


@pytest.mark.asyncio
async def test_rejected_vapid_is_resigned_once_then_fatal(webpush: WebPushEnv) -> None:
    webpush.fake.script("wrong-key", 403)
    signed_before = webpush.sender.signer.signed

    [verdict] = await webpush.sender.send_batch(delivery_batch("webpush", [item(webpush, "wrong-key")]))

    assert (verdict.action, verdict.provider_status) == (Action.FATAL_CONFIG, 403)
    assert len(webpush.fake.records) == 2
    assert webpush.sender.signer.signed == signed_before + 2  # the first use and the re-sign


@pytest.mark.asyncio
async def test_rejected_vapid_recovers_after_resigning(webpush: WebPushEnv) -> None:
    webpush.fake.script("once", 401, times=1)

    [verdict] = await webpush.sender.send_batch(delivery_batch("webpush", [item(webpush, "once")]))

    assert verdict.action is Action.DELIVERED
    assert webpush.sender.counters.auth_refreshes == 1


@pytest.mark.asyncio
async def test_network_errors_are_retries(webpush: WebPushEnv) -> None:
    dead = {"device_id": "d", "payload": {"id": "n-1"},
            "subscription": {**webpush.fake.subscription("x"), "endpoint": "http://127.0.0.1:9/push/x"}}

    [verdict] = await asyncio.wait_for(webpush.sender.send_batch(delivery_batch("webpush", [dead])), timeout=3)

    assert (verdict.action, verdict.reason) == (Action.RETRY, "connect_failed")


@pytest.mark.asyncio
async def test_slow_service_hits_the_deadline(webpush: WebPushEnv) -> None:
    sender = WebPushSender(webpush.settings, deadline=0.2)
    await sender.start()
    try:
        webpush.fake.latency = 5.0
        [verdict] = await asyncio.wait_for(
            sender.send_batch(delivery_batch("webpush", [item(webpush, "sub-1")])), timeout=2
        )
    finally:
        await sender.close()

    assert (verdict.action, verdict.reason) == (Action.RETRY, "timeout")


@pytest.mark.asyncio
async def test_unusable_subscriptions_fail_locally(webpush: WebPushEnv) -> None:
    no_keys = {"device_id": "a", "payload": {"id": "n-1"},
               "subscription": {"endpoint": webpush.fake.origin + "/push/a"}}
    bad_key = {"device_id": "b", "payload": {"id": "n-1"},
               "subscription": {**webpush.fake.subscription("b"), "keys": {"p256dh": "!!", "auth": "??"}}}
    expired = delivery_batch("webpush", [item(webpush, "sub-1")], expires_at=time.time() - 1)

    missing, garbled = await webpush.sender.send_batch(delivery_batch("webpush", [no_keys, bad_key]))
    [late] = await webpush.sender.send_batch(expired)

    assert (missing.action, missing.reason) == (Action.FAILED, "bad_address")
    assert (garbled.action, garbled.reason) == (Action.FAILED, "bad_address")
    assert (late.action, late.reason) == (Action.FAILED, "expired")
    assert webpush.fake.records == []


def test_topic_is_a_valid_rfc8030_topic() -> None:
    assert topic_for("order-42") == "order-42"
    derived = topic_for("order 42 / café, a rather long collapse key")
    assert len(derived) == 32 and derived == topic_for("order 42 / café, a rather long collapse key")
    assert all(c.isalnum() or c in "-_" for c in derived)


def test_vapid_signer_renews_an_hour_before_expiry(dev_setup: DevSetup) -> None:
    now = [1_800_000_000.0]
    signer = VapidSigner(load_vapid_key(dev_setup.vapid_private_key_file), VAPID_SUBJECT, clock=lambda: now[0])
    first = signer.header_for("https://push.example.com")
    now[0] += VapidSigner.LIFETIME - VapidSigner.RENEW_BEFORE - 1
    assert signer.header_for("https://push.example.com") == first
    now[0] += 2
    assert signer.header_for("https://push.example.com") != first
    assert signer.signed == 2
    assert origin_of("https://push.example.com:8443/wpush/v2/abc") == "https://push.example.com:8443"
