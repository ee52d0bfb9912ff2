"""FcmSender against FakeFCM (OAuth token endpoint + messages:send over h2c), in-process."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from pushstream.config import FcmSettings
from pushstream.providers.fcm.client import FcmSender
from pushstream.providers.fcm.payload import build_fcm_message
from pushstream.providers.outcome import Action, Sender
from tests.unit.sender_fixtures import DEADLINE, FcmEnv, delivery_batch

TOKEN = "fcm-token-1"
NOTIFICATION = {"priority": "high", "ttl": 3600, "collapse_key": "order-42",
                "data": {"order_id": 42, "tags": ["a", "b"], "note": "as is"}}


def item(device: str, token: str = TOKEN) -> dict:
    return {"user_id": "u-1", "device_id": device, "token": token,
            "payload": build_fcm_message(NOTIFICATION, "Shipped", "Arrives Tuesday")}


def test_sender_satisfies_the_protocol(fcm: FcmEnv) -> None:
    assert isinstance(fcm.sender, Sender)
    assert fcm.sender.platform == "fcm"


@pytest.mark.asyncio
async def test_exact_message_fcm_receives(fcm: FcmEnv) -> None:
    expires_at = time.time() + 1800
    [verdict] = await fcm.sender.send_batch(delivery_batch("fcm", [item("d-1")], expires_at=expires_at))

    assert verdict.action is Action.DELIVERED and verdict.provider_status == 200
    assert verdict.detail is not None and verdict.detail.startswith(f"projects/{fcm.setup.fcm_project_id}/messages/")
    [record] = fcm.fake.messages
    assert record.path == f"/v1/projects/{fcm.setup.fcm_project_id}/messages:send"
    assert record.http_version == "2"  # h2c (prior knowledge) to the plain-http fake
    assert record.headers["content-type"] == "application/json"
    assert record.headers["authorization"].startswith("Bearer ya29.fake-")
    remaining = int(expires_at) - int(time.time())
    assert record.json == {
        "message": {
            "token": TOKEN,
            "notification": {"title": "Shipped", "body": "Arrives Tuesday"},
            # FCM data values must be strings: non-strings arrive as their JSON text.
            "data": {"order_id": "42", "tags": '["a","b"]', "note": "as is"},
            # The TTLs say what is left of the notification's lifetime at send time.
            "android": {"priority": "HIGH", "ttl": f"{remaining}s", "collapse_key": "order-42"},
            "apns": {"headers": {"apns-priority": "10", "apns-collapse-id": "order-42",
                                 "apns-expiration": str(int(expires_at))},
                     "payload": {"aps": {}}},
            "webpush": {"headers": {"Urgency": "high", "TTL": str(remaining), "Topic": "order-42"}},
        }
    }


@pytest.mark.asyncio
async def test_invalid_token_answers(fcm: FcmEnv) -> None:
    fcm.fake.unregister("gone")
    fcm.fake.script("garbled", 400, "INVALID_ARGUMENT")  # "not a valid FCM registration token"
    fcm.fake.script("other-project", 403, "SENDER_ID_MISMATCH")
    tokens = [TOKEN, "gone", "garbled", "other-project"]
    batch = delivery_batch("fcm", [item(f"d-{i}", token) for i, token in enumerate(tokens)])

    ok, gone, garbled, other = await fcm.sender.send_batch(batch)

    assert ok.action is Action.DELIVERED
    assert (gone.action, gone.provider_status, gone.reason) == (Action.INVALID_TOKEN, 404, "UNREGISTERED")
    assert (garbled.action, garbled.reason) == (Action.INVALID_TOKEN, "INVALID_ARGUMENT")
    assert (other.action, other.reason) == (Action.INVALID_TOKEN, "SENDER_ID_MISMATCH")


@pytest.mark.asyncio
async def test_payload_problems_never_invalidate_the_token(fcm: FcmEnv) -> None:
    bad = {"user_id": "u-1", "device_id": "d-1", "token": TOKEN, "payload": {"data": {"n": 1}}}  # not stringified

    [verdict] = await fcm.sender.send_batch(delivery_batch("fcm", [bad]))

    assert (verdict.action, verdict.reason, verdict.provider_status) == (Action.FAILED, "INVALID_ARGUMENT", 400)


@pytest.mark.asyncio
async def test_retry_after_is_honoured(fcm: FcmEnv) -> None:
    fcm.fake.script("busy", 503, "UNAVAILABLE", retry_after=7)
    fcm.fake.script("quota", 429, "QUOTA_EXCEEDED", retry_after=90)
    fcm.fake.script("quota-short", 429, "QUOTA_EXCEEDED", retry_after=5)

    busy, quota, short = await fcm.sender.send_batch(
        delivery_batch("fcm", [item("d-1", "busy"), item("d-2", "quota"), item("d-3", "quota-short")])
    )

    assert (busy.action, busy.retry_after) == (Action.RETRY, 7.0)
    assert (quota.action, quota.provider_status, quota.retry_after) == (Action.RETRY, 429, 90.0)
    assert short.retry_after == 60.0  # FCM: back off at least a minute on quota errors


@pytest.mark.asyncio
async def test_fifty_concurrent_sends_refresh_the_token_once(fcm: FcmEnv) -> None:
    assert fcm.fake.token_requests == 1  # the warm-up fetch in start()
    fcm.sender.credentials.expiry = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=1)
    assert not fcm.sender.credentials.valid

    verdicts = await fcm.sender.send_batch(delivery_batch("fcm", [item(f"d-{i}", f"tok-{i}") for i in range(50)]))

    assert all(v.action is Action.DELIVERED for v in verdicts)
    assert fcm.fake.token_requests == 2
    assert fcm.sender.counters.auth_refreshes == 2


@pytest.mark.asyncio
async def test_revoked_token_is_refreshed_once_and_every_send_retried(fcm: FcmEnv) -> None:
    fcm.fake.revoke_access_tokens()  # every send now gets 401 without an FcmError

    verdicts = await fcm.sender.send_batch(delivery_batch("fcm", [item(f"d-{i}", f"tok-{i}") for i in range(50)]))

    assert all(v.action is Action.DELIVERED for v in verdicts)
    assert fcm.fake.token_requests == 2
    assert fcm.sender.counters.resent == 50
    assert fcm.fake.stats()["by_status"] == {"200": 52, "401": 50}  # 2 token fetches + 50 sends


@pytest.mark.asyncio
async def test_still_unauthenticated_after_a_refresh_is_fatal(fcm: FcmEnv) -> None:
    fcm.fake.script(TOKEN, 401, "UNAUTHENTICATED")  # this token keeps getting the OAuth 401

    [verdict] = await fcm.sender.send_batch(delivery_batch("fcm", [item("d-1")]))

    assert (verdict.action, verdict.reason, verdict.provider_status) == (Action.FATAL_CONFIG, "UNAUTHENTICATED", 401)
    assert fcm.fake.token_requests == 2


@pytest.mark.asyncio
async def test_third_party_auth_error_is_fatal_without_a_refresh(fcm: FcmEnv) -> None:
    fcm.fake.script(TOKEN, 401, "THIRD_PARTY_AUTH_ERROR")

    [verdict] = await fcm.sender.send_batch(delivery_batch("fcm", [item("d-1")]))

    assert (verdict.action, verdict.reason) == (Action.FATAL_CONFIG, "THIRD_PARTY_AUTH_ERROR")
    assert fcm.fake.token_requests == 1


@pytest.mark.asyncio
async def test_ttl_zero_is_sent_as_zero_seconds_however_late(fcm: FcmEnv) -> None:
    payload = build_fcm_message({**NOTIFICATION, "ttl": 0}, "Shipped", None)
    batch = delivery_batch("fcm", [{**item("d-1"), "payload": payload}], expires_at=time.time() - 3600, ttl=0)

    [verdict] = await fcm.sender.send_batch(batch)

    assert verdict.action is Action.DELIVERED
    [record] = fcm.fake.messages
    message = record.json["message"]
    assert message["android"]["ttl"] == "0s"
    assert message["webpush"]["headers"]["TTL"] == "0"
    assert message["apns"]["headers"]["apns-expiration"] == "0"


@pytest.mark.asyncio
async def test_local_checks_and_duplicates(fcm: FcmEnv) -> None:
    batch = delivery_batch("fcm", [item("d-1"), item("d-2"), {"device_id": "d-3", "payload": {}}])
    expired = delivery_batch("fcm", [item("d-4")], expires_at=time.time() - 5)

    first, second, no_token = await fcm.sender.send_batch(batch)
    [late] = await fcm.sender.send_batch(expired)

    assert first.action is second.action is Action.DELIVERED
    assert len(fcm.fake.messages) == 1  # the same token twice is sent once
    assert (no_token.action, no_token.reason) == (Action.FAILED, "bad_address")
    assert (late.action, late.reason) == (Action.FAILED, "expired")


@pytest.mark.asyncio
async def test_slow_provider_hits_the_deadline(fcm: FcmEnv) -> None:
    sender = FcmSender(fcm.settings, deadline=0.2)
    await sender.start()
    try:
        fcm.fake.latency = 5.0
        [verdict] = await asyncio.wait_for(sender.send_batch(delivery_batch("fcm", [item("d-1")])), timeout=2)
    finally:
        await sender.close()

    assert (verdict.action, verdict.reason) == (Action.RETRY, "timeout")


@pytest.mark.asyncio
async def test_unreachable_token_endpoint_is_a_retry(fcm: FcmEnv) -> None:
    await fcm.fake.stop()  # token endpoint and send endpoint gone
    fcm.sender.credentials.expiry = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=1)

    [verdict] = await asyncio.wait_for(fcm.sender.send_batch(delivery_batch("fcm", [item("d-1")])), timeout=DEADLINE)

    assert (verdict.action, verdict.reason) == (Action.RETRY, "oauth_unreachable")


@pytest.mark.asyncio
async def test_unreachable_send_endpoint_is_a_retry(fcm: FcmEnv) -> None:
    settings = FcmSettings(credentials_file=fcm.settings.credentials_file, project_id=fcm.settings.project_id,
                           endpoint="http://127.0.0.1:9", timeout_seconds=1.0)
    sender = FcmSender(settings)
    await sender.start()  # the token still comes from the fake
    try:
        [verdict] = await sender.send_batch(delivery_batch("fcm", [item("d-1")]))
    finally:
        await sender.close()

    assert (verdict.action, verdict.reason) == (Action.RETRY, "connect_failed")


@pytest.mark.asyncio
async def test_goaway_mid_batch_resends_only_the_unprocessed(fcm: FcmEnv) -> None:
    fcm.fake.goaway_after = 30  # on every connection, after 30 requests
    tokens = [f"tok-{i}" for i in range(100)]

    verdicts = await asyncio.wait_for(
        fcm.sender.send_batch(delivery_batch("fcm", [item(f"d-{i}", t) for i, t in enumerate(tokens)])),
        timeout=DEADLINE + 2,
    )

    assert all(v.action is Action.DELIVERED for v in verdicts)
    assert fcm.fake.stats()["goaways"] >= 3
    assert sorted(r.key for r in fcm.fake.messages if r.key) == sorted(tokens)  # none sent twice
    assert fcm.sender.counters.resent > 0


@pytest.mark.asyncio
async def test_the_servers_stream_limit_is_honoured(fcm: FcmEnv) -> None:
    fcm.fake.latency = 0.05  # answers pile up: without the limit all 300 would be open at once
    batch = delivery_batch("fcm", [item(f"d-{i}", f"tok-{i}") for i in range(300)])

    verdicts = await asyncio.wait_for(fcm.sender.send_batch(batch), timeout=DEADLINE)

    assert all(v.action is Action.DELIVERED for v in verdicts)
    # FakeFCM advertises 100 per connection; on a loaded machine answers may come back before all are open.
    assert 50 <= fcm.fake.stats()["max_concurrent_streams"] <= 100


@pytest.mark.asyncio
async def test_connection_loss_is_connection_lost_then_a_new_connection(fcm: FcmEnv) -> None:
    fcm.fake.latency = 5.0
    pending = asyncio.ensure_future(
        fcm.sender.send_batch(delivery_batch("fcm", [item(f"d-{i}", f"tok-{i}") for i in range(5)]))
    )
    await asyncio.sleep(0.3)
    port = fcm.fake.port
    await fcm.fake.stop()

    verdicts = await asyncio.wait_for(pending, timeout=2)

    assert [(v.action, v.reason) for v in verdicts] == [(Action.RETRY, "connection_lost")] * 5
    fcm.fake.server.requested_port = port
    await fcm.fake.start()
    fcm.fake.latency = 0.0
    [verdict] = await asyncio.wait_for(fcm.sender.send_batch(delivery_batch("fcm", [item("d-9")])), timeout=2)
    assert verdict.action is Action.DELIVERED
    assert fcm.sender.pool.opened == 2


@pytest.mark.asyncio
async def test_a_deadline_cancels_cleanly_and_later_sends_work(fcm: FcmEnv) -> None:
    sender = FcmSender(fcm.settings, deadline=0.2)
    await sender.start()
    try:
        [first] = await sender.send_batch(delivery_batch("fcm", [item("d-0")]))
        fcm.fake.latency = 1.0
        [late] = await asyncio.wait_for(sender.send_batch(delivery_batch("fcm", [item("d-1", "tok-1")])), timeout=2)
        fcm.fake.latency = 0.0
        [after] = await asyncio.wait_for(sender.send_batch(delivery_batch("fcm", [item("d-2", "tok-2")])), timeout=2)
    finally:
        await sender.close()

    assert first.action is Action.DELIVERED
    assert (late.action, late.reason) == (Action.RETRY, "timeout")
    assert after.action is Action.DELIVERED


@pytest.mark.asyncio
async def test_transport_refused_stream_is_unprocessed_and_ping_is_acknowledged() -> None:
    from jh2._hazmat import Encoder

    from pushstream.providers import h2transport as h2t

    seen: list[tuple[int, int, int]] = []  # (type, flags, stream) of every frame the client sent

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(h2t.PREFACE))
        writer.write(h2t.frame(h2t.SETTINGS, 0, 0) + h2t.frame(h2t.PING, 0, 0, b"12345678"))
        encoder = Encoder()
        while True:
            head = await reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            ftype, flags, stream = head[3], head[4], int.from_bytes(head[5:], "big")
            await reader.readexactly(length)
            seen.append((ftype, flags, stream))
            if ftype == h2t.HEADERS and stream == 1:
                writer.write(h2t.frame(h2t.RST_STREAM, 0, 1, h2t.REFUSED_STREAM.to_bytes(4, "big")))
            elif ftype == h2t.HEADERS and stream == 3:
                block = encoder.encode([(b":status", b"200", False)])
                writer.write(h2t.frame(h2t.HEADERS, h2t.END_HEADERS | h2t.END_STREAM, 3, block))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        connection = await h2t.connect("127.0.0.1", port, ssl_context=None, timeout=2)
        headers = [(b":method", b"GET", False), (b":scheme", b"http", False), (b":path", b"/", False),
                   (b":authority", b"x", False)]
        with pytest.raises(h2t.StreamUnprocessed):
            await asyncio.wait_for(connection.request(headers), timeout=2)
        response = await asyncio.wait_for(connection.request(headers), timeout=2)
        connection.close()
    finally:
        server.close()

    assert response.status == 200
    assert (h2t.PING, h2t.ACK, 0) in seen and (h2t.SETTINGS, h2t.ACK, 0) in seen
