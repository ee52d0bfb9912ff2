"""WebPushSender against FakeWebPush (VAPID check, aes128gcm decryption), in-process."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import ssl
import time
from pathlib import Path
from typing import Any

import http_ece
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushstream.providers.outcome import Action, Sender
from pushstream.providers.webpush.classify import http_transport_kind
from pushstream.providers.webpush.client import VapidSigner, WebPushSender, load_vapid_key, origin_of, topic_for
from pushstream.providers.webpush.crypto import (
    MAX_PLAINTEXT,
    RECORD_SIZE,
    b64url_decode,
    decode_subscription_keys,
    encrypt,
)
from pushstream.providers.webpush.http import ConnectError, ConnectionLost, HttpClient, ProtocolError, Response
from pushstream.providers.webpush.payload import MAX_PLAINTEXT_BYTES, build_webpush_payload
from pushstream.providers.webpush.vapid import b64url
from pushstream.testing.fakes import DevSetup, FakeWebPush
from pushstream.testing.fakes.credentials import load_private_key, server_ssl_context
from tests.unit.sender_fixtures import VAPID_SUBJECT, WebPushEnv, delivery_batch

X962 = serialization.Encoding.X962
UNCOMPRESSED = serialization.PublicFormat.UncompressedPoint


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
async def test_ttl_zero_is_sent_with_ttl_zero_however_late(webpush: WebPushEnv) -> None:
    batch = delivery_batch("webpush", [item(webpush, "sub-1")], expires_at=time.time() - 3600, ttl=0)

    [verdict] = await webpush.sender.send_batch(batch)

    assert verdict.action is Action.DELIVERED
    [record] = webpush.fake.records
    assert record.headers["ttl"] == "0"


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


# RFC 8291 Appendix A: fixed application-server key and salt, so the whole body is known byte for byte.
RFC8291: dict[str, Any] = {
    "plaintext": b"When I grow up, I want to be a watermelon",
    "as_private": "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw",
    "ua_private": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
    "ua_public": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    "auth": "BTBZMqHH6r4Tts7J_aSIgg",
    "salt": "DGv6ra1nlYgDCS1FRnbzlw",
    "body": "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6"
            "PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
}


def _decoded(b64: str) -> bytes:
    raw = b64url_decode(b64)
    assert raw is not None, b64
    return raw


def _scalar_key(b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(_decoded(b64), "big"), ec.SECP256R1())


def test_encryption_reproduces_the_rfc8291_example() -> None:
    keys = decode_subscription_keys(RFC8291["ua_public"], RFC8291["auth"])
    assert keys is not None

    body = encrypt(RFC8291["plaintext"], keys, private_key=_scalar_key(RFC8291["as_private"]),
                   salt=b64url_decode(RFC8291["salt"]))

    assert b64url(body) == RFC8291["body"]
    ua = _scalar_key(RFC8291["ua_private"])
    assert ua.public_key().public_bytes(X962, UNCOMPRESSED) == keys.public_bytes
    assert http_ece.decrypt(body, private_key=ua, auth_secret=keys.auth, version="aes128gcm") == RFC8291["plaintext"]


@pytest.mark.parametrize("size", [0, 1, 300, MAX_PLAINTEXT_BYTES])
def test_encryption_decrypts_with_http_ece(size: int) -> None:
    ua = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    keys = decode_subscription_keys(b64url(ua.public_key().public_bytes(X962, UNCOMPRESSED)), b64url(auth))
    assert keys is not None
    plaintext = os.urandom(size)

    first, second = encrypt(plaintext, keys), encrypt(plaintext, keys)

    for body in (first, second):
        assert http_ece.decrypt(body, private_key=ua, auth_secret=auth, version="aes128gcm") == plaintext
        assert int.from_bytes(body[16:20], "big") == RECORD_SIZE and body[20] == 65
        assert len(body) == size + 86 + 1 + 16
    assert first[:16] != second[:16] and first[21:86] != second[21:86]  # fresh salt and ephemeral key
    assert MAX_PLAINTEXT == MAX_PLAINTEXT_BYTES and len(encrypt(b"x" * MAX_PLAINTEXT, keys)) == RECORD_SIZE


def test_subscription_keys_are_validated() -> None:
    good = decode_subscription_keys(RFC8291["ua_public"], RFC8291["auth"])
    assert good is not None and good.public_bytes == b64url_decode(RFC8291["ua_public"])
    off_curve = b64url(b"\x04" + b"\x01" * 64)
    assert decode_subscription_keys(off_curve, RFC8291["auth"]) is None
    assert decode_subscription_keys(RFC8291["ua_public"], b64url(b"short")) is None
    assert decode_subscription_keys("!!", "??") is None
    padded = base64.b64encode(_decoded(RFC8291["ua_public"])).decode()  # standard base64 with padding
    assert decode_subscription_keys(padded, RFC8291["auth"] + "==") == good


@pytest.mark.asyncio
async def test_subscription_keys_are_decoded_once(webpush: WebPushEnv) -> None:
    batch = delivery_batch("webpush", [item(webpush, "sub-1"), item(webpush, "sub-2")])

    await webpush.sender.send_batch(batch)
    verdicts = await webpush.sender.send_batch(batch)

    assert all(v.action is Action.DELIVERED for v in verdicts)
    info = webpush.sender._keys.cache_info()
    assert (info.misses, info.hits) == (2, 2)


def test_vapid_header_is_an_es256_jwt(dev_setup: DevSetup) -> None:
    key = load_vapid_key(dev_setup.vapid_private_key_file)
    signer = VapidSigner(key, VAPID_SUBJECT)

    header = signer.header_for("https://push.example.com")

    scheme, _, params = header.partition(" ")
    values = dict(p.split("=", 1) for p in params.split(","))
    assert scheme == "vapid" and set(values) == {"t", "k"}
    assert b64url_decode(values["k"]) == key.public_key().public_bytes(X962, UNCOMPRESSED)
    assert jwt.get_unverified_header(values["t"]) == {"typ": "JWT", "alg": "ES256"}
    claims = jwt.decode(values["t"], key.public_key(), algorithms=["ES256"], audience="https://push.example.com")
    assert claims["sub"] == VAPID_SUBJECT
    assert abs(claims["exp"] - (time.time() + VapidSigner.LIFETIME)) < 5


def test_vapid_key_formats_and_subject(dev_setup: DevSetup, tmp_path: Path) -> None:
    key = load_vapid_key(dev_setup.vapid_private_key_file)
    number = key.private_numbers().private_value
    raw = tmp_path / "raw.key"
    raw.write_text(b64url(number.to_bytes(32, "big")))
    der = tmp_path / "der.key"
    der.write_text(b64url(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())))
    assert load_vapid_key(raw).private_numbers().private_value == number
    assert load_vapid_key(der).private_numbers().private_value == number
    with pytest.raises(FileNotFoundError):
        load_vapid_key(tmp_path / "missing.pem")
    for subject in ("mailto:ops@example.com", "https://example.com/contact"):
        VapidSigner(key, subject)
    for subject in ("ops@example.com", "", "http://example.com", "mailto:nobody"):
        with pytest.raises(ValueError):
            VapidSigner(key, subject)


# -- the lean HTTP/1.1 client (http.py) against a server that writes scripted bytes ----------------------


class ScriptedServer:
    """Answers each request with the next scripted list of byte chunks; ``None`` closes the connection."""

    def __init__(self, answers: list[list[bytes | None]]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
                self.requests.append(head + await reader.readexactly(length))
                for chunk in self.answers.pop(0):
                    if chunk is None:
                        writer.close()
                        return
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(0.005)  # arrive in separate reads
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


def _head(port: int) -> bytes:
    return f"POST /push/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 3\r\n\r\n".encode()


async def _post(client: HttpClient, server: ScriptedServer, scheme: str = "http") -> Response:
    return await client.post(scheme, "127.0.0.1", server.port, _head(server.port), b"abc")


@pytest.mark.asyncio
async def test_http_client_parses_answers_and_reuses_connections() -> None:
    server = ScriptedServer([
        [b"HTTP/1.1 201 Created\r\nLocation: /m/1\r\nContent-", b"Length: 0\r\n\r\n"],
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n",
         b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel", b"lo\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"],
        [b"HTTP/1.1 410 Gone\r\nContent-Length: 4\r\nConnection: close\r\n\r\ngone"],
        [b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nuntil ", b"close", None],
    ])
    await server.start()
    client = HttpClient(max_connections=4)
    try:
        created = await _post(client, server)
        busy = await _post(client, server)
        gone = await _post(client, server)
        missing = await _post(client, server)
    finally:
        await client.close()
        await server.stop()

    assert (created.status, created.headers["location"], created.body) == (201, "/m/1", b"")
    assert (busy.status, busy.headers["retry-after"], busy.body) == (429, "7", b"hello world")
    assert (gone.status, gone.body) == (410, b"gone")
    assert (missing.status, missing.body) == (404, b"until close")
    assert server.connections == 2  # kept alive until the first Connection: close
    assert all(r.endswith(b"\r\n\r\nabc") for r in server.requests)


@pytest.mark.asyncio
async def test_http_client_errors() -> None:
    server = ScriptedServer([
        [b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nshort", None],
        [b"SPDY/3 200 OK\r\n\r\n"],
    ])
    await server.start()
    client = HttpClient(max_connections=4)
    try:
        with pytest.raises(ConnectionLost) as lost:
            await _post(client, server)
        with pytest.raises(ProtocolError) as garbled:
            await _post(client, server)
        with pytest.raises(ConnectError) as refused:
            await client.post("http", "127.0.0.1", 9, _head(9), b"abc")
    finally:
        await client.close()
        await server.stop()

    assert http_transport_kind(lost.value) == "connection_lost"
    assert http_transport_kind(garbled.value) == "transport_error"
    assert http_transport_kind(refused.value) == "connect_failed"


@pytest.mark.asyncio
async def test_http_client_caps_connections_and_speaks_tls(dev_setup: DevSetup) -> None:
    answer: list[bytes | None] = [b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"]
    server = ScriptedServer([answer] * 10)
    await server.start(server_ssl_context(dev_setup, ["http/1.1"]))
    client = HttpClient(max_connections=2, ssl=ssl.create_default_context(cafile=str(dev_setup.ca_cert_file)))
    try:
        answers = await asyncio.gather(*(
            client.post("https", "localhost", server.port, _head(server.port), b"abc") for _ in range(10)
        ))
    finally:
        await client.close()
        await server.stop()

    assert [a.status for a in answers] == [201] * 10
    assert server.most_open <= 2 and client.connections_made <= 2


@pytest.mark.asyncio
async def test_endpoints_that_would_break_the_request_line_fail_locally(webpush: WebPushEnv) -> None:
    good = webpush.fake.subscription("sub-1")
    bad = [{**good, "endpoint": endpoint} for endpoint in (
        good["endpoint"] + " HTTP/1.1\r\nX-Injected: 1", good["endpoint"] + "/é", "ftp://127.0.0.1/push/x",
        "http:///push/x", "http://127.0.0.1:99999/push/x",
    )]
    items = [{"device_id": f"d{i}", "subscription": s, "payload": {"id": "n-1"}} for i, s in enumerate(bad)]

    verdicts = await webpush.sender.send_batch(delivery_batch("webpush", items))

    assert [(v.action, v.reason) for v in verdicts] == [(Action.FAILED, "bad_address")] * len(bad)
    assert webpush.fake.records == []


@pytest.mark.asyncio
async def test_http_client_drops_idle_connections_the_server_closed_or_that_sat_too_long() -> None:
    ok = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    server = ScriptedServer([[ok, None], [ok], [ok]])  # the first connection is closed after its answer
    await server.start()
    client = HttpClient(max_connections=4, idle_seconds=0.05)
    try:
        first = await _post(client, server)
        await asyncio.sleep(0.02)  # the close arrives while the connection is idle
        second = await _post(client, server)
        await asyncio.sleep(0.1)  # longer than idle_seconds
        third = await _post(client, server)
    finally:
        await client.close()
        await server.stop()

    assert [r.status for r in (first, second, third)] == [201, 201, 201]
    assert server.connections == 3
