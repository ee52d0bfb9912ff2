"""FakeAPNs against the real aioapns client, plus frame-level checks with a raw h2 client."""

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
import jwt
import pytest
import pytest_asyncio
from aioapns import NotificationRequest, PushType
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.settings import SettingCodes

from pushstream.testing.fakes import DevSetup, FakeAPNs, generate_dev_setup
from pushstream.testing.fakes.clients import local_aioapns_client
from pushstream.testing.fakes.credentials import client_ssl_context

TOKEN = "ab" * 32
OTHER_TOKEN = "cd" * 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> DevSetup:
    return generate_dev_setup(tmp_path_factory.mktemp("apns"), apns_port=0, fcm_port=0, webpush_port=0)


@pytest_asyncio.fixture
async def apns(setup: DevSetup) -> AsyncIterator[FakeAPNs]:
    fake = FakeAPNs(setup)
    await fake.start()
    yield fake
    await fake.stop()


def provider_token(setup: DevSetup, *, iat: float | None = None, key_pem: bytes | None = None) -> str:
    return jwt.encode(
        {"iss": setup.apns_team_id, "iat": int(time.time() if iat is None else iat)},
        key_pem or setup.apns_key_file.read_bytes(),
        algorithm="ES256",
        headers={"kid": setup.apns_key_id},
    )


class RawH2Client:
    """Just enough HTTP/2 to see frames and SETTINGS as the server sends them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.flush()

    @classmethod
    async def connect(cls, setup: DevSetup, port: int, alpn: tuple[str, ...] = ()) -> RawH2Client:
        context: ssl.SSLContext = client_ssl_context(setup, alpn)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
        return cls(reader, writer)

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    def send(self, headers: dict[str, str], body: bytes, *, method: str = "POST", path: str | None = None) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        pseudo = [
            (":method", method),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", path or f"/3/device/{TOKEN}"),
        ]
        self.conn.send_headers(stream_id, pseudo + list(headers.items()), end_stream=not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.flush()
        return stream_id

    async def wait_for(self, predicate: Callable[[list[h2.events.Event]], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.events):
                data = await self.reader.read(65536)
                if not data:
                    return
                self.events.extend(self.conn.receive_data(data))
                self.flush()

    async def response(self, stream_id: int) -> tuple[dict[str, str], list[bytes]]:
        """Headers and the list of DATA frame payloads of one stream."""
        await self.wait_for(
            lambda evs: any(isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id for e in evs)
        )
        headers: dict[str, str] = {}
        frames: list[bytes] = []
        for event in self.events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                headers = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                frames.append(event.data)  # type: ignore[arg-type]
        return headers, frames

    def close(self) -> None:
        self.writer.close()


def valid_headers(setup: DevSetup, **overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "authorization": f"bearer {provider_token(setup)}",
        "apns-id": str(uuid.uuid4()),
        "apns-topic": setup.apns_topic,
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-expiration": "0",
        **overrides,
    }
    return {k: v for k, v in headers.items() if v is not None}


@pytest.mark.asyncio
async def test_aioapns_send_is_accepted_and_recorded(setup: DevSetup, apns: FakeAPNs) -> None:
    client = local_aioapns_client(setup, apns.port)
    message = {"aps": {"alert": {"title": "Hi", "body": "there"}}, "order": 7}
    request = NotificationRequest(TOKEN, message, push_type=PushType.ALERT, collapse_key="c1", priority=10)

    result = await client.send_notification(request)

    assert result.is_successful and result.notification_id == request.notification_id
    [record] = apns.records
    assert record.status == 200 and record.http_version == "2" and record.key == TOKEN
    assert record.json == message
    assert record.headers["apns-topic"] == setup.apns_topic
    assert record.headers["apns-push-type"] == "alert"
    assert record.headers["apns-collapse-id"] == "c1"
    assert record.headers["apns-id"] == request.notification_id
    assert record.headers["authorization"].startswith("bearer ")


@pytest.mark.asyncio
async def test_jwt_signed_with_another_key_gets_403(setup: DevSetup, apns: FakeAPNs) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    client = local_aioapns_client(setup, apns.port, key=stranger.decode())

    result = await client.send_notification(NotificationRequest(TOKEN, {"aps": {"alert": "x"}}))

    assert (result.status, result.description) == ("403", "InvalidProviderToken")


@pytest.mark.asyncio
async def test_unregistered_token_gets_410_with_timestamp(setup: DevSetup, apns: FakeAPNs) -> None:
    apns.unregister(OTHER_TOKEN, at_ms=1_700_000_000_123)
    client = local_aioapns_client(setup, apns.port)

    gone = await client.send_notification(NotificationRequest(OTHER_TOKEN, {"aps": {"alert": "x"}}))
    fine = await client.send_notification(NotificationRequest(TOKEN, {"aps": {"alert": "x"}}))

    assert (gone.status, gone.description, gone.timestamp) == ("410", "Unregistered", 1_700_000_000_123)
    assert fine.is_successful
    assert apns.stats()["by_status"] == {"200": 1, "410": 1}


@pytest.mark.asyncio
async def test_goaway_after_n_requests_and_aioapns_reconnects(setup: DevSetup, apns: FakeAPNs) -> None:
    apns.goaway_after = 2
    client = local_aioapns_client(setup, apns.port)
    for _ in range(2):
        assert (await client.send_notification(NotificationRequest(TOKEN, {"aps": {"alert": "x"}}))).is_successful
    # aioapns drops the connection on GOAWAY; wait for that, or the next send would reuse it.
    async with asyncio.timeout(5):
        while client.pool.connections:
            await asyncio.sleep(0.005)

    third = await client.send_notification(NotificationRequest(TOKEN, {"aps": {"alert": "x"}}))

    assert third.is_successful
    stats = apns.stats()
    assert stats["goaways"] == 1 and stats["connections"] == 2 and stats["requests"] == 3


@pytest.mark.asyncio
async def test_goaway_frame_names_last_stream_and_reason(setup: DevSetup, apns: FakeAPNs) -> None:
    apns.goaway_after = 1
    raw = await RawH2Client.connect(setup, apns.port)
    stream_id = raw.send(valid_headers(setup), b'{"aps": {}}')

    await raw.wait_for(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs))

    [goaway] = [e for e in raw.events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.last_stream_id == stream_id
    assert json.loads(goaway.additional_data or b"") == {"reason": "Shutdown"}
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id for e in raw.events)
    raw.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("alpn", [(), ("h2",)], ids=["prior-knowledge", "alpn-h2"])
async def test_stream_limit_starts_at_1_and_rises_after_valid_jwt(
    setup: DevSetup, apns: FakeAPNs, alpn: tuple[str, ...]
) -> None:
    raw = await RawH2Client.connect(setup, apns.port, alpn)

    def limits() -> list[int]:
        return [
            s.new_value
            for e in raw.events
            if isinstance(e, h2.events.RemoteSettingsChanged)
            for code, s in e.changed_settings.items()
            if code == SettingCodes.MAX_CONCURRENT_STREAMS
        ]

    await raw.wait_for(lambda _: bool(limits()))
    assert limits() == [1]
    headers, frames = await raw.response(raw.send(valid_headers(setup), b'{"aps": {}}'))

    assert headers[":status"] == "200" and frames == []  # success: HEADERS + END_STREAM, no DATA frame
    assert uuid.UUID(headers["apns-id"])
    await raw.wait_for(lambda _: len(limits()) == 2)
    assert limits() == [1, 1000]
    raw.close()


BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("no-jwt", {"headers": {"authorization": None}}, 403, "MissingProviderToken"),
    ("expired-jwt", {"iat_age": 7200}, 403, "ExpiredProviderToken"),
    ("garbage-jwt", {"headers": {"authorization": "bearer not.a.jwt"}}, 403, "InvalidProviderToken"),
    ("get", {"method": "GET"}, 405, "MethodNotAllowed"),
    ("bad-path", {"path": "/3/other/abcd"}, 404, "BadPath"),
    ("non-hex-token", {"path": "/3/device/xyz"}, 400, "BadDeviceToken"),
    ("no-topic", {"headers": {"apns-topic": None}}, 400, "MissingTopic"),
    ("other-topic", {"headers": {"apns-topic": "com.other.app"}}, 400, "BadTopic"),
    ("bad-apns-id", {"headers": {"apns-id": "123"}}, 400, "BadMessageId"),
    ("bad-priority", {"headers": {"apns-priority": "7"}}, 400, "BadPriority"),
    ("background-10", {"headers": {"apns-push-type": "background"}}, 400, "BadPriority"),
    ("bad-expiration", {"headers": {"apns-expiration": "soon"}}, 400, "BadExpirationDate"),
    ("bad-push-type", {"headers": {"apns-push-type": "shout"}}, 400, "InvalidPushType"),
    ("long-collapse-id", {"headers": {"apns-collapse-id": "c" * 65}}, 400, "BadCollapseId"),
    ("empty-payload", {"body": b""}, 400, "PayloadEmpty"),
    ("too-large", {"body": b'{"a":"' + b"x" * 4100 + b'"}'}, 413, "PayloadTooLarge"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("case", "status", "reason"), [(c[1], c[2], c[3]) for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
async def test_invalid_requests_get_apple_reasons_in_one_data_frame(
    setup: DevSetup, apns: FakeAPNs, case: dict[str, Any], status: int, reason: str
) -> None:
    headers = valid_headers(setup, **case.get("headers", {}))
    if "iat_age" in case:
        headers["authorization"] = f"bearer {provider_token(setup, iat=time.time() - case['iat_age'])}"
    raw = await RawH2Client.connect(setup, apns.port)

    answer, frames = await raw.response(
        raw.send(
            headers,
            case.get("body", b'{"aps": {}}'),
            method=case.get("method", "POST"),
            path=case.get("path"),
        )
    )

    assert int(answer[":status"]) == status
    assert len(frames) == 1 and json.loads(frames[0]) == {"reason": reason}
    assert answer["apns-id"] == headers["apns-id"]  # echoed even on errors
    raw.close()


@pytest.mark.asyncio
async def test_voip_payload_may_reach_5120_bytes(setup: DevSetup, apns: FakeAPNs) -> None:
    raw = await RawH2Client.connect(setup, apns.port)
    body = b'{"a":"' + b"x" * 5000 + b'"}'
    headers = valid_headers(setup, **{"apns-push-type": "voip", "apns-topic": setup.apns_topic + ".voip"})

    answer, _ = await raw.response(raw.send(headers, body))

    assert answer[":status"] == "200"
    raw.close()


@pytest.mark.asyncio
async def test_scripted_429_then_success_with_retry_after(setup: DevSetup, apns: FakeAPNs) -> None:
    apns.script(TOKEN, 429, retry_after=3, times=1)
    raw = await RawH2Client.connect(setup, apns.port)

    first, frames = await raw.response(raw.send(valid_headers(setup), b'{"aps": {}}'))
    second, _ = await raw.response(raw.send(valid_headers(setup), b'{"aps": {}}'))

    assert (first[":status"], first["retry-after"], json.loads(frames[0])) == (
        "429",
        "3",
        {"reason": "TooManyRequests"},
    )
    assert second[":status"] == "200"
    raw.close()


@pytest.mark.asyncio
async def test_latency_does_not_serialise_streams(setup: DevSetup, apns: FakeAPNs) -> None:
    apns.latency = 0.3
    client = local_aioapns_client(setup, apns.port, max_connections=1)
    await client.send_notification(NotificationRequest(TOKEN, {"aps": {}}))  # connection up, limit raised
    started = time.monotonic()

    results = await asyncio.gather(
        *(client.send_notification(NotificationRequest(TOKEN, {"aps": {}})) for _ in range(10))
    )

    assert all(r.is_successful for r in results)
    assert time.monotonic() - started < 1.5  # serial would take 3 s
    assert apns.stats()["max_concurrent_streams"] >= 2


def test_fraction_script_is_deterministic_for_a_seed(setup: DevSetup) -> None:
    def picks(seed: int) -> list[bool]:
        fake = FakeAPNs(setup)
        fake.script_fraction(0.3, 503, "ServiceUnavailable", seed=seed)
        return [fake.fault_for(TOKEN) is not None for _ in range(200)]

    assert picks(7) == picks(7)
    assert picks(7) != picks(8)
    assert 30 <= sum(picks(7)) <= 90


def test_dev_setup_is_idempotent(tmp_path: Path) -> None:
    first = generate_dev_setup(tmp_path, apns_port=1, fcm_port=2, webpush_port=3, seed=b"s")
    again = generate_dev_setup(tmp_path, apns_port=1, fcm_port=4, webpush_port=3)

    assert (again.apns_key_id, again.apns_team_id, again.webpush_seed) == (
        first.apns_key_id,
        first.apns_team_id,
        b"s",
    )
    assert len(first.apns_key_id) == 10 and first.apns_key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert json.loads(again.fcm_service_account_file.read_text())["token_uri"] == "http://127.0.0.1:4/token"
    assert again.ca_cert_file.read_bytes() == first.ca_cert_file.read_bytes()
