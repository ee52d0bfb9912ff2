"""ApnsSender against FakeAPNs (raw h2 over TLS, JWT checks), in-process."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pushstream.providers.apns.client import APNS_ID_NAMESPACE, ApnsSender, ProviderToken, apns_id_for
from pushstream.providers.apns.payload import build_apns_payload
from pushstream.providers.outcome import Action, Sender
from pushstream.testing.fakes import DevSetup, FakeAPNs
from pushstream.testing.fakes.credentials import load_private_key
from tests.unit.sender_fixtures import DEADLINE, ApnsEnv, apns_settings, delivery_batch

TOKEN = "ab" * 32


def item(device: str, token: str = TOKEN, payload: dict | None = None) -> dict:
    payload = payload or build_apns_payload({"data": {"order_id": "42"}}, "Shipped", "Arrives Tuesday")
    return {"user_id": "u-1", "device_id": device, "token": token, "payload": payload}


def test_sender_satisfies_the_protocol(apns: ApnsEnv) -> None:
    assert isinstance(apns.sender, Sender)
    assert apns.sender.platform == "apns"


@pytest.mark.asyncio
async def test_exact_request_apns_receives(apns: ApnsEnv) -> None:
    payload = build_apns_payload({"data": {"order_id": "42", "n": 1}}, "Shipped ✓", "Arrives Tuesday")
    expires_at = time.time() + 600
    batch = delivery_batch("apns", [item("d-1", payload=payload)], expires_at=expires_at, collapse_key="order-42")

    [verdict] = await apns.sender.send_batch(batch)

    assert verdict.action is Action.DELIVERED and verdict.provider_status == 200
    [record] = apns.fake.records
    assert record.path == f"/3/device/{TOKEN}" and record.method == "POST" and record.http_version == "2"
    headers = record.headers
    assert headers["apns-id"] == str(uuid.uuid5(APNS_ID_NAMESPACE, "n-1/d-1")) == apns_id_for("n-1", "d-1")
    assert headers["apns-topic"] == apns.setup.apns_topic
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-expiration"] == str(int(expires_at))
    assert headers["apns-collapse-id"] == "order-42"
    assert headers["host"] == "localhost"
    # Compact UTF-8 JSON, custom keys beside aps.
    assert record.body == orjson.dumps(payload)
    assert record.json == {"aps": {"alert": {"title": "Shipped ✓", "body": "Arrives Tuesday"}}, "order_id": "42",
                           "n": 1}
    scheme, _, token = headers["authorization"].partition(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(token)["kid"] == apns.setup.apns_key_id
    key = load_private_key(apns.setup.apns_key_file)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    claims = jwt.decode(token, key.public_key(), algorithms=["ES256"])
    assert claims["iss"] == apns.setup.apns_team_id and abs(claims["iat"] - time.time()) < 3600


@pytest.mark.asyncio
async def test_background_push_uses_priority_5_and_no_expiration_when_none(apns: ApnsEnv) -> None:
    payload = build_apns_payload({"data": {"sync": "1"}}, None, None)
    batch = delivery_batch("apns", [item("d-1", payload=payload)], expires_at=None, priority="high")

    [verdict] = await apns.sender.send_batch(batch)

    assert verdict.action is Action.DELIVERED
    headers = apns.fake.records[0].headers
    assert (headers["apns-push-type"], headers["apns-priority"]) == ("background", "5")
    assert "apns-expiration" not in headers and "apns-collapse-id" not in headers


@pytest.mark.asyncio
async def test_invalid_token_answers(apns: ApnsEnv) -> None:
    apns.fake.unregister("cd" * 32, at_ms=1795312941202)
    batch = delivery_batch("apns", [item("d-1"), item("d-2", token="cd" * 32), item("d-3", token="not-hex")])

    ok, gone, bad = await apns.sender.send_batch(batch)

    assert ok.action is Action.DELIVERED
    assert (gone.action, gone.provider_status, gone.reason) == (Action.INVALID_TOKEN, 410, "Unregistered")
    assert gone.detail == "unregistered_at_ms=1795312941202"
    assert (bad.action, bad.provider_status, bad.reason) == (Action.INVALID_TOKEN, 400, "BadDeviceToken")
    assert apns.sender.counters.actions == {"delivered": 1, "invalid_token": 2}


@pytest.mark.asyncio
async def test_too_many_requests_is_a_retry(apns: ApnsEnv) -> None:
    apns.fake.script(TOKEN, 429, "TooManyRequests", retry_after=30)

    [verdict] = await apns.sender.send_batch(delivery_batch("apns", [item("d-1")]))

    # Real APNs sends no Retry-After; one that arrives anyway is honoured.
    assert (verdict.action, verdict.reason, verdict.provider_status) == (Action.RETRY, "TooManyRequests", 429)
    assert verdict.retry_after == 30.0


@pytest.mark.asyncio
async def test_ttl_zero_is_sent_with_expiration_zero_however_late(apns: ApnsEnv) -> None:
    # received an hour ago with ttl 0: still its first attempt, so it goes out, now or never
    batch = delivery_batch("apns", [item("d-1")], expires_at=time.time() - 3600, ttl=0)

    [verdict] = await apns.sender.send_batch(batch)

    assert verdict.action is Action.DELIVERED
    [record] = apns.fake.records
    assert record.headers["apns-expiration"] == "0"


@pytest.mark.asyncio
async def test_local_checks_make_no_request(apns: ApnsEnv) -> None:
    huge = {"aps": {"alert": {"body": "x" * 5000}}}
    batch = delivery_batch("apns", [item("d-1", payload=huge), {"device_id": "d-2", "payload": huge}])
    expired = delivery_batch("apns", [item("d-3")], expires_at=time.time() - 1)

    too_large, no_token = await apns.sender.send_batch(batch)
    [late] = await apns.sender.send_batch(expired)

    assert (too_large.action, too_large.reason) == (Action.FAILED, "payload_too_large")
    assert (no_token.action, no_token.reason) == (Action.FAILED, "bad_address")
    assert (late.action, late.reason) == (Action.FAILED, "expired")
    assert apns.fake.records == []


@pytest.mark.asyncio
async def test_the_same_device_twice_is_sent_once(apns: ApnsEnv) -> None:
    verdicts = await apns.sender.send_batch(delivery_batch("apns", [item("d-1"), item("d-1")]))

    assert [v.action for v in verdicts] == [Action.DELIVERED, Action.DELIVERED]
    assert len(apns.fake.records) == 1


@pytest.mark.asyncio
async def test_goaway_mid_batch_every_item_gets_a_verdict_without_duplicates(apns: ApnsEnv) -> None:
    apns.fake.goaway_after = 30  # on every connection, after 30 requests
    tokens = [f"{i:064x}" for i in range(100)]
    batch = delivery_batch("apns", [item(f"d-{i}", token=t) for i, t in enumerate(tokens)])

    started = time.monotonic()
    verdicts = await asyncio.wait_for(apns.sender.send_batch(batch), timeout=DEADLINE + 2)

    assert time.monotonic() - started < DEADLINE
    assert len(verdicts) == 100
    assert all(v.action is Action.DELIVERED for v in verdicts)
    assert apns.fake.stats()["goaways"] >= 3
    # Streams above last_stream_id were resent on a new connection; none was delivered twice.
    assert sorted(r.key for r in apns.fake.records if r.key) == sorted(tokens)
    assert apns.sender.counters.resent > 0


@pytest.mark.asyncio
async def test_goaway_after_every_request_still_ends_every_item(apns: ApnsEnv) -> None:
    apns.fake.goaway_after = 1
    batch = delivery_batch("apns", [item(f"d-{i}", token=f"{i:064x}") for i in range(20)])

    verdicts = await asyncio.wait_for(apns.sender.send_batch(batch), timeout=DEADLINE + 2)

    assert len(verdicts) == 20
    assert {v.action for v in verdicts} <= {Action.DELIVERED, Action.RETRY}
    assert all(v.reason in (None, "unprocessed", "connection_lost") for v in verdicts)


@pytest.mark.asyncio
async def test_a_silent_server_hits_the_deadline_and_the_pool_is_replaced(dev_setup: DevSetup) -> None:
    fake = FakeAPNs(dev_setup)
    await fake.start()
    sender = ApnsSender(apns_settings(dev_setup, fake.port), deadline=1.0)
    await sender.start()
    try:
        # Connected first: on a loaded machine the TLS handshake alone can outlast a short deadline.
        [warm] = await asyncio.wait_for(sender.send_batch(delivery_batch("apns", [item("d-0")])), timeout=10)
        assert warm.action is Action.DELIVERED and sender.counters.reconnects == 0
        fake.latency = 30.0  # answers never come within the deadline
        batch = delivery_batch("apns", [item(f"d-{i}", token=f"{i:064x}") for i in range(10)])

        verdicts = await asyncio.wait_for(sender.send_batch(batch), timeout=5)

        assert [(v.action, v.reason) for v in verdicts] == [(Action.RETRY, "timeout")] * 10
        assert sender.counters.reconnects == 1
        fake.latency = 0.0
        [verdict] = await sender.send_batch(delivery_batch("apns", [item("d-1")]))
        assert verdict.action is Action.DELIVERED
    finally:
        await sender.close()
        await fake.stop()


@pytest.mark.asyncio
async def test_unreachable_endpoint_is_a_retry(dev_setup: DevSetup) -> None:
    fake = FakeAPNs(dev_setup)
    await fake.start()
    port = fake.port
    await fake.stop()  # nothing listens there any more
    sender = ApnsSender(apns_settings(dev_setup, port))
    await sender.start()
    try:
        [verdict] = await asyncio.wait_for(sender.send_batch(delivery_batch("apns", [item("d-1")])), timeout=2)
    finally:
        await sender.close()

    assert (verdict.action, verdict.reason) == (Action.RETRY, "connect_failed")


@pytest.mark.asyncio
async def test_one_jwt_for_all_connections(apns: ApnsEnv) -> None:
    # The fake allows one stream per connection until a valid JWT arrives, so a burst opens both connections.
    batch = delivery_batch("apns", [item(f"d-{i}", token=f"{i:064x}") for i in range(300)])

    verdicts = await apns.sender.send_batch(batch)

    assert all(v.action is Action.DELIVERED for v in verdicts)
    assert len({r.connection_id for r in apns.fake.records}) == 2
    assert len({r.headers["authorization"] for r in apns.fake.records}) == 1


def test_provider_token_renews_at_most_every_20_minutes() -> None:
    now = [1_800_000_000.0]
    token = ProviderToken(ec.generate_private_key(ec.SECP256R1()), "KEY1234567", "TEAM123456", clock=lambda: now[0])
    first = token.get_header()
    issued = token.issued_at

    now[0] += 60
    assert token.get_header() == first
    assert token.renew(issued) is False  # rejected after a minute: re-signing now would be throttled
    now[0] += 25 * 60
    assert token.renew(issued) is True and token.get_header() != first
    assert token.renew(issued) is True  # someone already renewed: nothing to do
    assert token.signed == 2
    now[0] += ProviderToken.LIFETIME
    token.get_header()
    assert token.signed == 3


@pytest.mark.asyncio
async def test_expired_provider_token_is_renewed_and_resent(apns: ApnsEnv) -> None:
    token = apns.sender.token
    token.issued_at -= ProviderToken.MIN_RENEW_INTERVAL + 1  # old enough to be re-signed
    apns.fake.script(TOKEN, 403, "ExpiredProviderToken", times=1)
    signed = token.signed

    [verdict] = await apns.sender.send_batch(delivery_batch("apns", [item("d-1")]))

    assert verdict.action is Action.DELIVERED
    assert token.signed == signed + 1
    assert [r.status for r in apns.fake.records] == [403, 200]


@pytest.mark.asyncio
async def test_fatal_configuration(apns: ApnsEnv) -> None:
    apns.fake.script(TOKEN, 403, "InvalidProviderToken")

    [verdict] = await apns.sender.send_batch(delivery_batch("apns", [item("d-1")]))

    assert (verdict.action, verdict.reason) == (Action.FATAL_CONFIG, "InvalidProviderToken")


@pytest.mark.asyncio
async def test_many_error_bodies_do_not_stall_the_connection(apns: ApnsEnv) -> None:
    # ~40 bytes of error body each: well past the 64 KiB connection window if DATA were not acknowledged.
    tokens = [f"{i:064x}" for i in range(2000)]
    for token in tokens:
        apns.fake.unregister(token)
    batch = delivery_batch("apns", [item(f"d-{i}", token=t) for i, t in enumerate(tokens)])
    # A stalled connection never answers, so a deadline long enough for 2,000 answers from the in-process fake
    # on a loaded machine still tells a stall (every verdict a timeout) from a slow run.
    sender = ApnsSender(apns.settings, deadline=30.0)
    await sender.start()
    try:
        verdicts = await asyncio.wait_for(sender.send_batch(batch), timeout=40.0)
    finally:
        await sender.close()

    assert all(v.action is Action.INVALID_TOKEN for v in verdicts)


@pytest.mark.asyncio
async def test_connection_loss_fails_in_flight_as_connection_lost_and_the_next_send_reconnects(apns: ApnsEnv) -> None:
    [warm] = await apns.sender.send_batch(delivery_batch("apns", [item("d-0")]))
    assert warm.action is Action.DELIVERED
    apns.fake.latency = 5.0
    batch = delivery_batch("apns", [item(f"d-{i}", token=f"{i:064x}") for i in range(10)])
    pending = asyncio.ensure_future(apns.sender.send_batch(batch))
    await asyncio.sleep(0.3)  # every request is on the wire, waiting for its answer
    port = apns.fake.port
    await apns.fake.stop()  # the server drops its connections

    verdicts = await asyncio.wait_for(pending, timeout=2)

    assert [(v.action, v.reason) for v in verdicts] == [(Action.RETRY, "connection_lost")] * 10
    apns.fake.server.requested_port = port
    await apns.fake.start()
    apns.fake.latency = 0.0
    [verdict] = await asyncio.wait_for(apns.sender.send_batch(delivery_batch("apns", [item("d-1")])), timeout=2)
    assert verdict.action is Action.DELIVERED
    assert apns.sender.pool.opened >= 1 and apns.fake.stats()["connections"] >= 1


@pytest.mark.asyncio
async def test_stream_limit_starts_at_one_and_follows_the_raise(apns: ApnsEnv) -> None:
    # FakeAPNs advertises MAX_CONCURRENT_STREAMS=1 until a request with a valid JWT; then 1000.
    apns.fake.latency = 0.05
    batch = delivery_batch("apns", [item(f"d-{i}", token=f"{i:064x}") for i in range(200)])

    verdicts = await asyncio.wait_for(apns.sender.send_batch(batch), timeout=DEADLINE)

    assert all(v.action is Action.DELIVERED for v in verdicts)
    connections = apns.sender.pool.connections
    assert connections and all(c.max_streams == 1000 for c in connections)
    assert apns.fake.stats()["max_concurrent_streams"] > 1  # the raise was used


@pytest.mark.asyncio
async def test_bodies_larger_than_a_small_initial_window_arrive_whole(
    dev_setup: DevSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    import h2.settings

    from pushstream.testing.fakes import httpserver

    def small_window_settings(max_streams: int) -> h2.settings.Settings:
        return h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000,  # every body spans several windows
        })

    monkeypatch.setattr(httpserver._H2Session, "_settings", staticmethod(small_window_settings))
    fake = FakeAPNs(dev_setup)
    await fake.start()
    sender = ApnsSender(apns_settings(dev_setup, fake.port, max_connections=1))
    await sender.start()
    try:
        # 60 x ~3.9 KB: past the 1000-byte stream windows and the 64 KiB connection window.
        payloads = [build_apns_payload({"data": {"blob": f"{i:04d}" * 960}}, "t", "b") for i in range(60)]
        items = [item(f"d-{i}", token=f"{i:064x}", payload=p) for i, p in enumerate(payloads)]

        verdicts = await asyncio.wait_for(sender.send_batch(delivery_batch("apns", items)), timeout=DEADLINE)

        assert all(v.action is Action.DELIVERED for v in verdicts)
        received = {r.key: r.body for r in fake.records}
        assert all(received[f"{i:064x}"] == orjson.dumps(p) for i, p in enumerate(payloads))
    finally:
        await sender.close()
        await fake.stop()


@pytest.mark.asyncio
async def test_a_deadline_resets_the_stream_and_the_connection_stays_usable(apns: ApnsEnv) -> None:
    await apns.sender.send_batch(delivery_batch("apns", [item("d-0")]))  # connection up, JWT accepted
    sender = ApnsSender(apns.settings, deadline=0.2)
    await sender.start()
    try:
        await sender.send_batch(delivery_batch("apns", [item("d-0")]))
        apns.fake.latency = 1.0
        [late] = await asyncio.wait_for(sender.send_batch(delivery_batch("apns", [item("d-1")])), timeout=2)
        apns.fake.latency = 0.0
        [verdict] = await asyncio.wait_for(sender.send_batch(delivery_batch("apns", [item("d-2")])), timeout=2)
    finally:
        await sender.close()

    assert (late.action, late.reason) == (Action.RETRY, "timeout")
    assert verdict.action is Action.DELIVERED
