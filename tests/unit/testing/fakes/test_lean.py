"""Benchmark mode (lean.py): real clients and a strict h2 client against the lean HTTP/2 and HTTP/1.1 paths."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import jwt
import pytest
import pytest_asyncio
from aioapns import NotificationRequest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.settings import SettingCodes
from pywebpush import webpush_async

from pushstream.testing.fakes import DevSetup, FakeAPNs, FakeFCM, FakesProcess, FakeWebPush, generate_dev_setup
from pushstream.testing.fakes.clients import FCM_SCOPES, fcm_credentials, fcm_http2_client, local_aioapns_client
from pushstream.testing.fakes.credentials import b64url, client_ssl_context, load_private_key
from pushstream.testing.fakes.lean import set_read_coalescing

TOKEN = "ab" * 32
GONE_TOKEN = "cd" * 32
BUSY_TOKEN = "ef" * 32


@pytest.fixture(scope="module")
def base_setup(tmp_path_factory: pytest.TempPathFactory) -> DevSetup:
    return generate_dev_setup(tmp_path_factory.mktemp("bench"), apns_port=0, fcm_port=0, webpush_port=0)


@pytest_asyncio.fixture
async def apns(base_setup: DevSetup) -> AsyncIterator[FakeAPNs]:
    async with FakeAPNs(base_setup, benchmark=True) as fake:
        yield fake


@pytest_asyncio.fixture
async def fcm(base_setup: DevSetup) -> AsyncIterator[FakeFCM]:
    async with FakeFCM(base_setup, benchmark=True) as fake:
        yield fake


@pytest_asyncio.fixture
async def webpush(base_setup: DevSetup) -> AsyncIterator[FakeWebPush]:
    async with FakeWebPush(base_setup, benchmark=True) as fake:
        yield fake


def apns_jwt(setup: DevSetup) -> str:
    return jwt.encode(
        {"iss": setup.apns_team_id, "iat": int(time.time())},
        setup.apns_key_file.read_bytes(),
        algorithm="ES256",
        headers={"kid": setup.apns_key_id},
    )


def apns_headers(setup: DevSetup) -> list[tuple[str, str]]:
    return [
        ("authorization", f"bearer {apns_jwt(setup)}"),
        ("apns-id", str(uuid.uuid4())),
        ("apns-topic", setup.apns_topic),
        ("apns-push-type", "alert"),
    ]


async def fcm_token(setup: DevSetup, fake: FakeFCM) -> str:
    import google.auth.transport.requests

    fixed = generate_dev_setup(setup.directory, apns_port=0, fcm_port=fake.port, webpush_port=0)
    credentials = fcm_credentials(fixed)
    await asyncio.to_thread(credentials.refresh, google.auth.transport.requests.Request())
    return str(credentials.token)


class StrictH2:
    """The h2 library as a client: it checks every frame, HPACK block and window the fake sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int | None) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        if window is not None:
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.auto_ack = True
        self.flush()

    @classmethod
    async def connect(cls, port: int, *, context: ssl.SSLContext | None = None, window: int | None = None) -> StrictH2:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
        )
        return cls(reader, writer, window)

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    def send(self, path: str, headers: list[tuple[str, str]], body: bytes, *, scheme: str = "https") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        pseudo = [(":method", "POST"), (":scheme", scheme), (":authority", "localhost"), (":path", path)]
        self.conn.send_headers(stream_id, pseudo + headers)
        for start in range(0, len(body), 16384):
            self.conn.send_data(stream_id, body[start : start + 16384])
        self.conn.end_stream(stream_id)
        self.flush()
        return stream_id

    async def send_large(self, path: str, headers: list[tuple[str, str]], body: bytes, scheme: str) -> int:
        """Send a body bigger than the windows: waits for the fake's WINDOW_UPDATEs."""
        stream_id = self.conn.get_next_available_stream_id()
        pseudo = [(":method", "POST"), (":scheme", scheme), (":authority", "localhost"), (":path", path)]
        self.conn.send_headers(stream_id, pseudo + headers)
        sent = 0
        while sent < len(body):
            window = min(self.conn.local_flow_control_window(stream_id), 16384, len(body) - sent)
            if window <= 0:
                await self.read_once()
                continue
            self.conn.send_data(stream_id, body[sent : sent + window])
            sent += window
            self.flush()
        self.conn.end_stream(stream_id)
        self.flush()
        return stream_id

    async def read_once(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("closed")
        for event in self.conn.receive_data(data):
            self.events.append(event)
            if isinstance(event, h2.events.DataReceived) and self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id or 0)
        self.flush()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self.read_once()

    def ended(self, stream_id: int) -> bool:
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id for e in self.events)

    async def response(self, stream_id: int) -> tuple[dict[str, str], list[bytes]]:
        await self.wait_for(lambda: self.ended(stream_id))
        headers: dict[str, str] = {}
        frames: list[bytes] = []
        for event in self.events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                headers = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                frames.append(event.data)  # type: ignore[arg-type]
        return headers, frames

    def limits(self) -> list[int]:
        return [
            s.new_value
            for e in self.events
            if isinstance(e, h2.events.RemoteSettingsChanged)
            for code, s in e.changed_settings.items()
            if code == SettingCodes.MAX_CONCURRENT_STREAMS
        ]

    def close(self) -> None:
        self.writer.close()


# -- APNs ----------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_apns_aioapns_gets_200s_counted_not_recorded(base_setup: DevSetup, apns: FakeAPNs) -> None:
    client = local_aioapns_client(base_setup, apns.port)
    results = await asyncio.gather(
        *(client.send_notification(NotificationRequest(TOKEN, {"aps": {"alert": f"n{i}"}})) for i in range(40))
    )

    assert all(r.is_successful for r in results)
    assert apns.records == [] and apns.stats()["by_status"] == {"200": 40} and apns.stats()["requests"] == 40


@pytest.mark.asyncio
async def test_apns_unregistered_scripted_and_bad_jwt_still_answer(base_setup: DevSetup, apns: FakeAPNs) -> None:
    apns.unregister(GONE_TOKEN, at_ms=1_700_000_000_123)
    apns.script(BUSY_TOKEN, 429, times=1)
    client = local_aioapns_client(base_setup, apns.port)
    gone = await client.send_notification(NotificationRequest(GONE_TOKEN, {"aps": {}}))
    busy = await client.send_notification(NotificationRequest(BUSY_TOKEN, {"aps": {}}))
    again = await client.send_notification(NotificationRequest(BUSY_TOKEN, {"aps": {}}))
    other_key = ec.generate_private_key(ec.SECP256R1())
    pem = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    forged = await local_aioapns_client(base_setup, apns.port, key=pem).send_notification(
        NotificationRequest(TOKEN, {"aps": {}})
    )

    assert (gone.status, gone.description, gone.timestamp) == ("410", "Unregistered", 1_700_000_000_123)
    assert (busy.status, busy.description) == ("429", "TooManyRequests") and again.is_successful
    assert (forged.status, forged.description) == ("403", "InvalidProviderToken")
    assert apns.stats()["by_status"] == {"200": 1, "403": 1, "410": 1, "429": 1}


@pytest.mark.asyncio
@pytest.mark.parametrize("alpn", [(), ("h2",)], ids=["prior-knowledge", "alpn-h2"])
async def test_apns_frames_limit_raise_and_error_body(
    base_setup: DevSetup, apns: FakeAPNs, alpn: tuple[str, ...]
) -> None:
    raw = await StrictH2.connect(apns.port, context=client_ssl_context(base_setup, alpn))
    await raw.wait_for(lambda: bool(raw.limits()))
    assert raw.limits() == [1]
    headers = apns_headers(base_setup)

    ok_headers, ok_frames = await raw.response(raw.send(f"/3/device/{TOKEN}", headers, b'{"aps": {}}'))
    await raw.wait_for(lambda: len(raw.limits()) == 2)
    bad_headers, bad_frames = await raw.response(raw.send("/3/device/xyz", headers, b'{"aps": {}}'))
    raw.close()

    assert ok_headers[":status"] == "200" and ok_frames == []  # HEADERS + END_STREAM, no DATA
    assert ok_headers["apns-id"] == headers[1][1]
    assert raw.limits() == [1, 1000]
    assert bad_headers[":status"] == "400" and bad_headers["content-type"] == "application/json"
    assert [json.loads(frame) for frame in bad_frames] == [{"reason": "BadDeviceToken"}]


@pytest.mark.asyncio
async def test_apns_goaway_after_n_answers_what_it_took(base_setup: DevSetup, apns: FakeAPNs) -> None:
    apns.goaway_after = 2
    raw = await StrictH2.connect(apns.port, context=client_ssl_context(base_setup))
    first = await raw.response(raw.send(f"/3/device/{TOKEN}", apns_headers(base_setup), b"{}"))
    await raw.wait_for(lambda: len(raw.limits()) == 2)
    second = raw.send(f"/3/device/{TOKEN}", apns_headers(base_setup), b"{}")
    third = raw.send(f"/3/device/{TOKEN}", apns_headers(base_setup), b"{}")

    await raw.wait_for(lambda: any(isinstance(e, h2.events.ConnectionTerminated) for e in raw.events))

    [goaway] = [e for e in raw.events if isinstance(e, h2.events.ConnectionTerminated)]
    assert first[0][":status"] == "200" and raw.ended(second) and not raw.ended(third)
    assert goaway.last_stream_id == second and json.loads(goaway.additional_data or b"") == {"reason": "Shutdown"}
    assert apns.stats()["goaways"] == 1 and apns.stats()["requests"] == 2


# -- FCM -----------------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fcm_httpx_h2c_and_http1_with_scripted_answers(base_setup: DevSetup, fcm: FakeFCM) -> None:
    token = await fcm_token(base_setup, fcm)
    fcm.unregister("gone")
    auth = {"Authorization": f"Bearer {token}"}
    async with fcm_http2_client() as h2_client, httpx.AsyncClient() as h1_client:
        ok = await asyncio.gather(
            *(h2_client.post(fcm.send_url, json={"message": {"token": f"t{i}"}}, headers=auth) for i in range(30))
        )
        gone = await h2_client.post(fcm.send_url, json={"message": {"token": "gone"}}, headers=auth)
        anonymous = await h2_client.post(fcm.send_url, json={"message": {"token": "t"}})
        plain = await h1_client.post(fcm.send_url, json={"message": {"token": "t"}}, headers=auth)

    assert {r.status_code for r in ok} == {200} and {r.http_version for r in ok} == {"HTTP/2"}
    assert all(r.json()["name"].startswith(f"projects/{fcm.project_id}/messages/") for r in ok)
    assert gone.status_code == 404 and gone.json()["error"]["details"][0]["errorCode"] == "UNREGISTERED"
    assert anonymous.status_code == 401
    assert plain.status_code == 200 and plain.http_version == "HTTP/1.1"
    assert fcm.stats()["by_status"] == {"200": 32, "401": 1, "404": 1}  # the token request counts too


@pytest.mark.asyncio
async def test_fcm_latency_holds_answers_without_serialising(base_setup: DevSetup, fcm: FakeFCM) -> None:
    token = await fcm_token(base_setup, fcm)
    fcm.latency = 0.3
    async with fcm_http2_client() as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                client.post(
                    fcm.send_url, json={"message": {"token": "t"}}, headers={"Authorization": f"Bearer {token}"}
                )
                for _ in range(10)
            )
        )
        elapsed = time.monotonic() - started

    assert {r.status_code for r in responses} == {200}
    assert 0.3 <= elapsed < 1.5


@pytest.mark.asyncio
async def test_read_coalescing_still_answers_everything(base_setup: DevSetup, fcm: FakeFCM) -> None:
    token = await fcm_token(base_setup, fcm)
    set_read_coalescing(0.002)
    try:
        async with fcm_http2_client() as client:
            auth = {"Authorization": f"Bearer {token}"}
            responses = await asyncio.gather(
                *(client.post(fcm.send_url, json={"message": {"token": f"t{i}"}}, headers=auth) for i in range(50))
            )
    finally:
        set_read_coalescing(0)

    assert {r.status_code for r in responses} == {200}
    with pytest.raises(ValueError):
        set_read_coalescing(-1)


@pytest.mark.asyncio
async def test_fcm_flow_control_both_ways(base_setup: DevSetup, fcm: FakeFCM) -> None:
    token = await fcm_token(base_setup, fcm)
    headers = [("authorization", f"Bearer {token}"), ("content-type", "application/json")]
    path = f"/v1/projects/{fcm.project_id}/messages:send"
    # A tiny client window: the fake must hold its DATA until the client opens the window.
    raw = await StrictH2.connect(fcm.port, window=8)
    raw.auto_ack = False
    streams = [raw.send(path, headers, b'{"message": {"token": "t"}}', scheme="http") for _ in range(5)]
    await raw.wait_for(
        lambda: (
            sum(isinstance(e, h2.events.ResponseReceived) for e in raw.events) == 5
            and sum(isinstance(e, h2.events.DataReceived) for e in raw.events) == 0
        )
    )
    for stream_id in streams:
        raw.conn.increment_flow_control_window(4096, stream_id)
    raw.flush()
    answers = [await raw.response(stream_id) for stream_id in streams]
    # A body over the fake's windows: it must give window back while receiving.
    big = json.dumps({"message": {"token": "t", "data": {"blob": "x" * 3_000_000}}}).encode()
    raw.auto_ack = True
    raw.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    large_headers, _ = await raw.response(await raw.send_large(path, headers, big, "http"))
    raw.close()

    assert all(h[":status"] == "200" and json.loads(b"".join(frames))["name"] for h, frames in answers)
    assert large_headers[":status"] == "200"


@pytest.mark.asyncio
async def test_garbage_header_block_is_a_compression_error(fcm: FakeFCM) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fcm.port)
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    writer.write(b"\x00\x00\x03\x01\x05\x00\x00\x00\x01" + b"\xff\xff\xff")  # HEADERS, END_STREAM|END_HEADERS
    data = b""
    async with asyncio.timeout(5):
        while chunk := await reader.read(65536):
            data += chunk
    writer.close()

    goaway = data.find(b"\x07\x00\x00\x00\x00\x00")  # GOAWAY frame type, no flags, stream 0
    assert goaway > 0 and int.from_bytes(data[goaway + 10 : goaway + 14], "big") == 0x9  # COMPRESSION_ERROR


# -- Web Push ------------------------------------------------------------------------------------------------------


def vapid_authorization(setup: DevSetup, origin: str) -> str:
    key = load_private_key(setup.vapid_private_key_file)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    token = jwt.encode({"aud": origin, "exp": int(time.time()) + 3600, "sub": "mailto:a@b.c"}, key, "ES256")
    return f"vapid t={token},k={b64url(public)}"


def vapid_request(setup: DevSetup, fake: FakeWebPush, sid: str, body: bytes = b"\x00" * 100) -> bytes:
    head = (
        f"POST /push/{sid} HTTP/1.1\r\nHost: 127.0.0.1:{fake.port}\r\nTTL: 60\r\nContent-Encoding: aes128gcm\r\n"
        f"Authorization: {vapid_authorization(setup, fake.origin)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_responses(reader: asyncio.StreamReader, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    async with asyncio.timeout(5):
        for _ in range(count):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            out.append((int(head[0].split(" ")[1]), headers, body))
    return out


@pytest.mark.asyncio
async def test_webpush_pywebpush_pipelining_and_scripted_answers(base_setup: DevSetup, webpush: FakeWebPush) -> None:
    webpush.unregister("gone")
    webpush.script("busy", 429, retry_after=7)
    subscription = webpush.subscription("sub-1")
    response = await webpush_async(
        subscription,
        "hello",
        vapid_private_key=str(base_setup.vapid_private_key_file),
        vapid_claims={"sub": "mailto:ops@example.com"},
        ttl=60,
        timeout=5,
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", webpush.port)
    # Three pipelined requests in one write: answered in order on one connection.
    writer.write(b"".join(vapid_request(base_setup, webpush, sid) for sid in ("s1", "gone", "busy")))
    answers = await read_responses(reader, 3)
    writer.write(vapid_request(base_setup, webpush, "s2").replace(b"vapid t=", b"vapid t=x"))
    [forged] = await read_responses(reader, 1)
    writer.close()

    assert response.status == 201
    assert [status for status, _, _ in answers] == [201, 410, 429]
    assert answers[0][1]["location"].startswith(f"{webpush.origin}/message/") and answers[0][1]["ttl"] == "60"
    assert answers[2][1]["retry-after"] == "7"
    assert forged[0] == 403
    assert webpush.records == [] and webpush.stats()["by_status"] == {"201": 2, "403": 1, "410": 1, "429": 1}


@pytest.mark.asyncio
async def test_webpush_chunked_body_is_411_and_closes(webpush: FakeWebPush) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", webpush.port)
    writer.write(b"POST /push/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    [(status, headers, _)] = await read_responses(reader, 1)
    async with asyncio.timeout(5):
        rest = await reader.read()
    writer.close()

    assert status == 411 and headers["connection"] == "close" and rest == b""


@pytest.mark.asyncio
async def test_webpush_latency_keeps_pipelined_order(base_setup: DevSetup, webpush: FakeWebPush) -> None:
    webpush.latency = 0.2
    reader, writer = await asyncio.open_connection("127.0.0.1", webpush.port)
    started = time.monotonic()
    writer.write(vapid_request(base_setup, webpush, "a") + vapid_request(base_setup, webpush, "b", b"\x01" * 10))
    answers: list[Any] = await read_responses(reader, 2)
    elapsed = time.monotonic() - started
    writer.close()

    assert [status for status, _, _ in answers] == [201, 201] and elapsed >= 0.4


# -- the subprocess (python -m pushstream.testing.fakes --benchmark, on uvloop) -------------------------------------


def test_subprocess_benchmark_mode_serves_all_three_and_counts(tmp_path: Path) -> None:
    fakes = FakesProcess(tmp_path / "dev", benchmark=True)
    with fakes as control:
        endpoints = fakes.endpoints
        assert endpoints is not None
        setup = setup_from(control.setup())
        control.unregister("apns", GONE_TOKEN)
        with httpx.Client(http2=True, verify=client_ssl_context(setup)) as client:
            url = f"https://localhost:{endpoints.apns_port}/3/device/"
            headers = dict(apns_headers(setup))
            apns = [client.post(url + token, content=b"{}", headers=headers) for token in (TOKEN, GONE_TOKEN)]
        account = json.loads(setup.fcm_service_account_file.read_text())
        now = int(time.time())
        assertion = jwt.encode(
            {"iss": account["client_email"], "scope": FCM_SCOPES[0], "aud": "x", "iat": now, "exp": now + 600},
            account["private_key"],
            "RS256",
        )
        with httpx.Client(http1=False, http2=True) as client:
            grant = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
            access = httpx.post(f"{endpoints.fcm_url}/token", data=grant).json()["access_token"]
            fcm = client.post(
                f"{endpoints.fcm_url}/v1/projects/{setup.fcm_project_id}/messages:send",
                json={"message": {"token": "t"}},
                headers={"Authorization": f"Bearer {access}"},
            )
        webpush = httpx.post(
            f"{endpoints.webpush_origin}/push/s1",
            content=b"\x00" * 64,
            headers={
                "TTL": "60",
                "Content-Encoding": "aes128gcm",
                "Authorization": vapid_authorization(setup, endpoints.webpush_origin),
            },
        )
        stats = control.stats()
        records = control.requests("fcm")

    assert [r.status_code for r in apns] == [200, 410] and {r.http_version for r in apns} == {"HTTP/2"}
    assert fcm.status_code == 200 and fcm.http_version == "HTTP/2" and webpush.status_code == 201
    assert stats["apns"]["by_status"] == {"200": 1, "410": 1}
    assert stats["fcm"]["by_status"] == {"200": 2} and stats["fcm"]["token_requests"] == 1
    assert stats["webpush"]["by_status"] == {"201": 1} and records == []
    assert "uvloop is not installed" not in fakes.log_file.read_text()


def setup_from(data: dict[str, Any]) -> DevSetup:
    values: dict[str, Any] = {
        name: Path(value) if name.endswith(("_file", "directory")) else value
        for name, value in data.items()
        if name in DevSetup.__dataclass_fields__
    }
    values["webpush_seed"] = bytes.fromhex(data["webpush_seed"])
    return DevSetup(**values)
