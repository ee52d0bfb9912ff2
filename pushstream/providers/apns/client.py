"""APNs sender: aioapns over HTTP/2 with token (.p8 JWT) authentication.

aioapns provides the connection pool, TLS set-up and stream-slot accounting; this module replaces the
parts of its HTTP/2 handling that hang or lose requests (providers.md §1.4; see ApnsProtocol) and adds:
- one provider JWT per key for every connection of the process, renewed every 40 min (Apple: 20 to 60);
- a pool ``acquire`` that never spins forever once its connections are gone (aioapns issue #41);
- on GOAWAY, only the unprocessed streams (id > last_stream_id) fail, and are resent on a new connection;
- a deadline around every send; when one passes and no connection has answered anything since the send
  began, the whole pool is replaced so a hung connection cannot hold later batches;
- deterministic ``apns-id`` (uuid5 of notification and device): a resend carries the same id.

Certificate auth is not supported: token auth is what the config describes (ApnsSettings has no cert).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn, cast
from urllib.parse import urlsplit

import h2.exceptions
import jwt
import orjson
from aioapns.common import NotificationRequest, NotificationResult, PushType
from aioapns.connection import (
    APNsBaseClientProtocol,
    APNsKeyConnectionPool,
    APNsTLSClientProtocol,
    AuthorizationHeaderProvider,
    ChannelPool,
)
from aioapns.exceptions import ConnectionClosed
from aioapns.exceptions import ConnectionError as ApnsConnectError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import NoAvailableStreamIDError
from h2.settings import ChangedSetting, SettingCodes
from hpack import HeaderTuple, NeverIndexedHeaderTuple

from pushstream.config import ApnsSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.apns.classify import apns_rule, classify_apns_answer, classify_apns_no_answer
from pushstream.providers.apns.payload import MAX_PAYLOAD_BYTES, apns_priority, push_type
from pushstream.providers.batching import send_each, within_deadline
from pushstream.providers.outcome import (
    LOCAL_BAD_ADDRESS,
    LOCAL_BAD_PAYLOAD,
    LOCAL_EXPIRED,
    LOCAL_PAYLOAD_TOO_LARGE,
    TRANSPORT_CONNECT_FAILED,
    TRANSPORT_CONNECTION_LOST,
    TRANSPORT_ERROR,
    TRANSPORT_UNPROCESSED,
    Action,
    SendCounters,
    Verdict,
    remaining_ttl,
)
from pushstream.rules.keys import token_fingerprint

log = logging.getLogger(__name__)

PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.sandbox.push.apple.com"  # Apple's documented name; aioapns uses an older alias
APNS_PORT = 443
# Namespace of the deterministic apns-id: uuid5(namespace, "<notification_id>/<device_id>").
APNS_ID_NAMESPACE = uuid.UUID("8aa0fa1e-32df-4e74-9916-14f77a4ee605")
MAX_COLLAPSE_ID_BYTES = 64


def apns_id_for(notification_id: str, device_id: str) -> str:
    """The ``apns-id`` of one notification to one device: stable across resends and retries."""
    return str(uuid.uuid5(APNS_ID_NAMESPACE, f"{notification_id}/{device_id}"))


class StreamUnprocessed(ConnectionClosed):
    """The request never reached APNs (GOAWAY above last_stream_id, or the connection was already going)."""


class ProviderToken(AuthorizationHeaderProvider):
    """The provider JWT of one signing key, shared by every connection of the process.

    Re-signed every ``LIFETIME`` seconds; on ``ExpiredProviderToken`` it is re-signed at most once per
    ``MIN_RENEW_INTERVAL`` (Apple answers TooManyProviderTokenUpdates to faster renewals).
    """

    LIFETIME = 40 * 60
    MIN_RENEW_INTERVAL = 20 * 60

    def __init__(
        self, signing_key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = signing_key
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._header: str | None = None
        self.issued_at = 0
        self.signed = 0  # how many JWTs were signed (a counter for metrics and tests)

    def get_header(self) -> str:
        """``bearer <JWT>``, re-signed when older than LIFETIME."""
        if self._header is None or self._clock() - self.issued_at >= self.LIFETIME:
            self._sign()
        assert self._header is not None
        return self._header

    def renew(self, rejected_issued_at: int) -> bool:
        """Re-sign after APNs rejected the JWT issued at ``rejected_issued_at``; False if too soon."""
        if self.issued_at != rejected_issued_at:
            return True  # someone else renewed it already
        if self._clock() - self.issued_at < self.MIN_RENEW_INTERVAL:
            return False
        self._sign()
        return True

    def _sign(self) -> None:
        self.issued_at = int(self._clock())
        token = jwt.encode({"iss": self._team_id, "iat": self.issued_at}, self._key, algorithm="ES256",
                           headers={"kid": self._key_id})
        self._header = f"bearer {token}"
        self.signed += 1


# One ProviderToken per (team, key id, key fingerprint) for the whole process.
_PROVIDER_TOKENS: dict[tuple[str, str, str], ProviderToken] = {}


def load_signing_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """Load the .p8 (PKCS#8 PEM, P-256) APNs signing key; ValueError if it is not one."""
    with open(path, "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: not a P-256 (ES256) private key")
    return key


def key_fingerprint(key: ec.EllipticCurvePrivateKey) -> str:
    """A short id of a key pair that is safe to log (hash of the public half)."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(public).hexdigest()[:16]


def shared_provider_token(key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str) -> ProviderToken:
    """The process-wide ProviderToken for this key."""
    ident = (team_id, key_id, key_fingerprint(key))
    token = _PROVIDER_TOKENS.get(ident)
    if token is None:
        token = _PROVIDER_TOKENS[ident] = ProviderToken(key, key_id, team_id)
    return token


class ApnsRequest(NotificationRequest):
    """A NotificationRequest carrying its encoded body and absolute ``apns-expiration``."""

    __slots__ = ("body", "expiration")

    def __init__(self, *, body: bytes, expiration: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body = body
        self.expiration = expiration


class StreamSlots(ChannelPool):
    """aioapns' stream-slot semaphore, correct when a lowered limit drives it below zero.

    APNs starts a connection at one stream, so requests sent before its SETTINGS arrive leave the count
    negative; asyncio.Semaphore treats any non-zero value as free and would let further streams through.
    """

    def locked(self) -> bool:
        return self._value <= 0 or any(not w.cancelled() for w in (self._waiters or ()))

    def release(self) -> None:
        self._value = min(self._value + 1, self._bound_value)
        if self._value > 0:
            self._wake_up_next()


class ApnsResult(NotificationResult):
    """aioapns' result plus the raw Retry-After header (APNs sends none; proxies and fakes may)."""

    __slots__ = ("retry_after",)

    def __init__(self, *args: Any, retry_after: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


@dataclass(slots=True)
class _Stream:
    """One request in flight on a connection."""

    apns_id: str
    future: asyncio.Future[NotificationResult]
    status: str = ""
    retry_after: str | None = None
    body: bytearray = field(default_factory=bytearray)


class ApnsProtocol(APNsTLSClientProtocol):
    """The HTTP/2 stream handling of aioapns' protocol, redone where aioapns gets it wrong.

    Kept from aioapns: connection set-up, TLS, the inactivity timer, the stream slot pool. Replaced:
    - the send waits for HTTP/2 flow-control window instead of failing with FlowControlError (which left a
      half-open stream behind and desynchronised the stream count);
    - received DATA is acknowledged (aioapns never does: after ~64 KiB of error bodies a connection stalls);
    - responses are matched by stream, not by the echoed apns-id, and bodies may span DATA frames;
    - a raised MAX_CONCURRENT_STREAMS takes effect (aioapns caps the increase at the old limit);
    - GOAWAY fails only streams above last_stream_id, as StreamUnprocessed, so they can be resent;
      RST_STREAM resolves its request instead of leaving it waiting;
    - a send cancelled by a deadline leaves nothing behind.
    Subclassed per endpoint (``APNS_SERVER``/``APNS_PORT``) by ``protocol_for``.
    """

    APNS_SERVER = PRODUCTION_HOST
    APNS_PORT = APNS_PORT
    INACTIVITY_TIME = 3600  # Apple: keep connections open for hours (aioapns closes after 10 s idle)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.free_channels = StreamSlots(1000)  # until the server's SETTINGS say otherwise
        self.going_away = False  # GOAWAY received or retired: take no new streams
        self.last_answer = 0.0  # monotonic time a stream was last answered: tells slow from stuck
        self._streams: dict[int, _Stream] = {}
        self._window_waiters: list[asyncio.Future[None]] = []

    @property
    def is_busy(self) -> bool:
        return self.going_away or self._closing or self.free_channels.is_busy

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._streams)

    @property
    def _closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    # -- sending ---------------------------------------------------------------------------------------

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        if self.going_away or self._closing:
            raise StreamUnprocessed("connection is going away")
        body = request.body if isinstance(request, ApnsRequest) else json.dumps(request.message).encode()
        stream_id = await self.free_channels.acquire()
        try:
            await self._wait_for_window(len(body))
        except BaseException:
            self.free_channels.release()
            raise
        try:
            self.conn.send_headers(stream_id, self._headers(request))
            self.conn.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.ProtocolError as exc:
            # Over the peer's limits or the connection closed under us: APNs never got a full request.
            self.free_channels.release()
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            self._flush_if_open()
            raise StreamUnprocessed(str(exc)) from exc
        stream = _Stream(request.notification_id, self.loop.create_future())
        self._streams[stream_id] = stream
        self.flush()
        # If a deadline cancels this wait the stream stays registered until its answer or the
        # connection's end, which frees its slot; the cancelled future is then skipped.
        return await stream.future

    def _headers(self, request: NotificationRequest) -> list[HeaderTuple]:
        # :path and apns-id are unique per request: indexing them would only churn the HPACK table.
        # h2 sends authorization never-indexed by itself.
        headers: list[HeaderTuple] = [
            HeaderTuple(":method", "POST"),
            HeaderTuple(":scheme", "https"),
            NeverIndexedHeaderTuple(":path", f"/3/device/{request.device_token}"),
            HeaderTuple("host", self.APNS_SERVER),
            NeverIndexedHeaderTuple("apns-id", request.notification_id),
            HeaderTuple("apns-topic", request.apns_topic or self.apns_topic),
        ]
        if isinstance(request, ApnsRequest) and request.expiration is not None:
            headers.append(HeaderTuple("apns-expiration", str(request.expiration)))
        elif request.time_to_live is not None:
            headers.append(HeaderTuple("apns-expiration", str(int(time.time()) + request.time_to_live)))
        if request.priority is not None:
            headers.append(HeaderTuple("apns-priority", str(request.priority)))
        if request.collapse_key is not None:
            headers.append(HeaderTuple("apns-collapse-id", request.collapse_key))
        if request.push_type is not None:
            headers.append(HeaderTuple("apns-push-type", request.push_type.value))
        if self.auth_provider is not None:
            headers.append(HeaderTuple("authorization", self.auth_provider.get_header()))
        return headers

    async def _wait_for_window(self, size: int) -> None:
        while self.conn.outbound_flow_control_window < size:
            if self.going_away or self._closing:
                raise StreamUnprocessed("connection is going away")
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._window_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._window_waiters:
                    self._window_waiters.remove(waiter)
        if self.going_away or self._closing:
            raise StreamUnprocessed("connection is going away")

    def _wake_window_waiters(self, exc: Exception | None = None) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def _flush_if_open(self) -> None:
        if not self._closing:
            self.flush()

    # -- receiving -------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("APNs: HTTP/2 protocol error, closing the connection: %s", exc)
            self._flush_if_open()
            self.close()
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                self.last_answer = time.monotonic()
                stream = self._streams.get(event.stream_id or 0)
                if stream is not None:
                    headers = dict(event.headers or ())
                    stream.status = headers.get(b":status", b"").decode("ascii", "replace")
                    retry_after = headers.get(b"retry-after")
                    stream.retry_after = retry_after.decode("ascii", "replace") if retry_after else None
            elif isinstance(event, DataReceived):
                stream = self._streams.get(event.stream_id or 0)
                if stream is not None and event.data:
                    stream.body.extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id or 0)
            elif isinstance(event, StreamEnded):
                self._finish(event.stream_id or 0)
            elif isinstance(event, StreamReset):
                self.last_answer = time.monotonic()
                self._reset(event.stream_id or 0, event.error_code)
            elif isinstance(event, WindowUpdated):
                self._wake_window_waiters()
            elif isinstance(event, RemoteSettingsChanged):
                self.on_remote_settings_changed(event.changed_settings)
                self._wake_window_waiters()  # INITIAL_WINDOW_SIZE may have grown
            elif isinstance(event, ConnectionTerminated):
                self.on_connection_terminated(event)
        self._flush_if_open()

    def _finish(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self.free_channels.release()
        if not stream.future.done():
            reason, timestamp = _error_body(stream.body)
            result = ApnsResult(stream.apns_id, stream.status or "0", reason, timestamp,
                                retry_after=stream.retry_after)
            stream.future.set_result(result)
        if self.going_away and not self._streams:
            self.close()

    def _reset(self, stream_id: int, error_code: ErrorCodes | int | None) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self.free_channels.release()
        if not stream.future.done():
            # RFC 9113 §8.7: REFUSED_STREAM means the request was not processed.
            exc_type = StreamUnprocessed if error_code == ErrorCodes.REFUSED_STREAM else ConnectionClosed
            stream.future.set_exception(exc_type(f"stream reset: {error_code!r}"))

    def on_remote_settings_changed(self, changed_settings: Mapping[Any, ChangedSetting]) -> None:
        for setting in changed_settings.values():
            if setting.setting == SettingCodes.MAX_CONCURRENT_STREAMS:
                self._resize_streams(setting.new_value)

    def _resize_streams(self, limit: int) -> None:
        """Follow the server's MAX_CONCURRENT_STREAMS, waking callers queued for a slot."""
        channels = self.free_channels
        in_use = channels._bound_value - channels._value
        channels._bound_value = limit
        channels._value = limit - in_use
        waiters = channels._waiters or ()
        while channels._value > 0 and any(not w.done() for w in waiters):
            channels._wake_up_next()

    def on_connection_terminated(self, event: ConnectionTerminated) -> None:
        last_stream_id = event.last_stream_id or 0
        log.warning("APNs GOAWAY: error_code=%s last_stream_id=%s data=%r", event.error_code, last_stream_id,
                    (event.additional_data or b"")[:200])
        self.going_away = True
        if self.on_connection_lost is not None:
            self.on_connection_lost(self)  # leave the pool now: new sends open a fresh connection
        unprocessed = StreamUnprocessed(f"GOAWAY last_stream_id={last_stream_id}")
        for stream_id in [s for s in self._streams if s > last_stream_id]:
            stream = self._streams.pop(stream_id)
            if not stream.future.done():
                stream.future.set_exception(unprocessed)
        self._fail_waiters(unprocessed)
        # h2 accepts no frames after GOAWAY, so streams <= last_stream_id still open are lost with the
        # connection; connection_lost fails them as ConnectionClosed (ambiguous: maybe delivered).
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inactivity_timer:
            self.inactivity_timer.cancel()
        if self.on_connection_lost is not None:
            self.on_connection_lost(self)
        closed = ConnectionClosed(str(exc) if exc else "connection closed")
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            if not stream.future.done():
                stream.future.set_exception(closed)
        self._fail_waiters(StreamUnprocessed(str(closed)))

    def _fail_waiters(self, exc: Exception) -> None:
        """Wake callers queued for a stream slot or for window on this connection: nothing was sent.

        Not aioapns' ChannelPool.destroy: it pops the waiters, and asyncio.Semaphore.acquire then fails
        with ValueError removing them.
        """
        for waiter in list(self.free_channels._waiters or ()):
            if not waiter.done():
                waiter.set_exception(exc)
        self._wake_window_waiters(exc)

    def retire(self) -> None:
        """Take no new streams; close once the in-flight ones are answered."""
        self.going_away = True
        if self.on_connection_lost is not None:
            self.on_connection_lost(self)
        self._fail_waiters(StreamUnprocessed("connection retired"))
        if not self._streams:
            self.close()


def _error_body(body: bytearray) -> tuple[str | None, int | None]:
    """``reason`` and ``timestamp`` of an APNs error body (None, None when absent or not JSON)."""
    if not body:
        return None, None
    try:
        parsed = json.loads(bytes(body))
    except ValueError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    reason = parsed.get("reason")
    timestamp = parsed.get("timestamp")
    return (reason if isinstance(reason, str) else None), (timestamp if isinstance(timestamp, int) else None)


def protocol_for(settings: ApnsSettings) -> type[ApnsProtocol]:
    """The protocol class for the configured endpoint (``settings.endpoint`` overrides Apple's host)."""
    if settings.endpoint:
        url = urlsplit(settings.endpoint)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"apns.endpoint must be an https:// URL, got {settings.endpoint!r}")
        host, port = url.hostname, url.port or APNS_PORT
    else:
        host, port = (SANDBOX_HOST if settings.environment == "sandbox" else PRODUCTION_HOST), APNS_PORT
    # host is also the 'host' header aioapns sends and the TLS server name.
    return type("ApnsEndpointProtocol", (ApnsProtocol,), {"APNS_SERVER": host, "APNS_PORT": port})


def ssl_context_for(settings: ApnsSettings) -> ssl.SSLContext:
    """TLS 1.2+, ALPN h2, trusting ``settings.ca_file`` in addition to the system store when given."""
    context = ssl.create_default_context()
    if settings.ca_file:
        context.load_verify_locations(cafile=str(settings.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    return context


class ApnsPool(APNsKeyConnectionPool):
    """aioapns' key-auth pool with a shared JWT and an ``acquire`` that cannot spin forever."""

    def __init__(self, settings: ApnsSettings, token: ProviderToken, signing_key_pem: str) -> None:
        super().__init__(
            key=signing_key_pem,
            key_id=settings.key_id,
            team_id=settings.team_id,
            topic=settings.topic,
            max_connections=settings.max_connections,
            max_connection_attempts=1,
            use_sandbox=settings.environment == "sandbox",
            ssl_context=ssl_context_for(settings),
        )
        self.protocol_class = protocol_for(settings)
        self.topic = settings.topic
        self.token = token

    async def create_connection(self) -> APNsBaseClientProtocol:
        # aioapns annotates the lost-connection callback as NoReturn; it is an ordinary callback.
        on_lost = cast(Callable[[APNsBaseClientProtocol], NoReturn], self.discard_connection)
        factory = partial(self.protocol_class, self.topic, self.loop, on_lost, self.token)
        return await self._create_connection(factory)

    def discard_connection(self, connection: APNsBaseClientProtocol) -> None:
        # Called on GOAWAY and again on connection_lost; aioapns' list.remove fails the second time.
        if connection in self.connections:
            self.connections.remove(connection)

    async def acquire(self) -> APNsBaseClientProtocol:
        """A connection with a free stream; else a new one; else the least loaded (queue on its streams)."""
        for connection in self.connections:
            if not connection.is_busy:
                return connection
        async with self._lock:
            for connection in self.connections:
                if not connection.is_busy:
                    return connection
            live = [c for c in self.connections if isinstance(c, ApnsProtocol) and not c.going_away]
            if len(self.connections) < self.max_connections or not live:
                try:
                    connection = await self.create_connection()
                except Exception as exc:
                    log.warning("APNs: cannot connect to %s:%s: %s", self.protocol_class.APNS_SERVER,
                                self.protocol_class.APNS_PORT, exc)
                    raise ApnsConnectError() from exc
                self.connections.append(connection)
                return connection
        # Every stream of every connection is taken: wait in that connection's own stream queue, which
        # GOAWAY/connection loss release with StreamUnprocessed.
        return max(live, key=lambda c: c.free_channels._value)

    def is_stuck(self, since: float) -> bool:
        """True when no connection answered any stream since ``since`` (monotonic): hung, not just busy."""
        return not any(isinstance(c, ApnsProtocol) and c.last_answer >= since for c in self.connections)


class ApnsSender:
    """Sends DeliveryBatches to APNs; one verdict per item (see outcome.Sender).

    ``deadline`` bounds each item's send including in-batch resends (default: settings.timeout_seconds);
    ``max_in_flight`` bounds concurrent sends (default: 250 per connection); sends waiting for a stream
    count against their deadline, so keep it near what the connections can carry.
    """

    platform = "apns"

    def __init__(
        self, settings: ApnsSettings, *, deadline: float | None = None, max_in_flight: int | None = None,
        max_resends: int = 2,
    ) -> None:
        self.settings = settings
        self.deadline = deadline if deadline is not None else settings.timeout_seconds
        self.max_resends = max_resends
        self.counters = SendCounters()
        self._max_in_flight = max_in_flight or 250 * settings.max_connections
        self._in_flight: asyncio.Semaphore | None = None
        self._pool: ApnsPool | None = None
        self._token: ProviderToken | None = None
        self._key_pem = ""

    @property
    def token(self) -> ProviderToken:
        """The shared provider JWT (after start)."""
        if self._token is None:
            raise RuntimeError("ApnsSender.start() was not called")
        return self._token

    async def start(self) -> None:
        """Load the signing key and build the pool; must run inside the event loop (aioapns needs it)."""
        key = load_signing_key(self.settings.key_file)
        self._key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()
        self._token = shared_provider_token(key, self.settings.key_id, self.settings.team_id)
        self._in_flight = asyncio.Semaphore(self._max_in_flight)
        self._pool = ApnsPool(self.settings, self._token, self._key_pem)
        log.info("APNs sender ready: %s:%s topic=%s key_id=%s key=%s", self._pool.protocol_class.APNS_SERVER,
                 self._pool.protocol_class.APNS_PORT, self.settings.topic, self.settings.key_id,
                 key_fingerprint(key))

    async def close(self) -> None:
        """Close every connection."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def send_batch(self, batch: DeliveryBatch) -> list[Verdict]:
        """Send every item concurrently; items with the same device share one send (same apns-id)."""
        if self._pool is None:
            raise RuntimeError("ApnsSender.start() was not called")
        ttl = remaining_ttl(batch.expires_at)
        return await send_each(batch.items, lambda item: self._prepare(batch, item, ttl), self._send,
                               key=lambda request: request.notification_id, counters=self.counters)

    def _prepare(
        self, batch: DeliveryBatch, item: dict[str, Any], ttl: int | None
    ) -> ApnsRequest | Verdict:
        token = item.get("token")
        payload = item.get("payload")
        if not isinstance(token, str) or not token:
            return classify_apns_no_answer(LOCAL_BAD_ADDRESS, "item has no token")
        if not isinstance(payload, dict):
            return classify_apns_no_answer(LOCAL_BAD_PAYLOAD, "item has no payload object")
        if ttl is not None and ttl <= 0:
            return classify_apns_no_answer(LOCAL_EXPIRED)
        try:
            body = orjson.dumps(payload)  # compact UTF-8 JSON: what is sent, and what the limit counts
        except TypeError as exc:
            return classify_apns_no_answer(LOCAL_BAD_PAYLOAD, str(exc)[:200])
        if len(body) > MAX_PAYLOAD_BYTES:
            too_large = f"{len(body)} > {MAX_PAYLOAD_BYTES} bytes"
            return classify_apns_no_answer(LOCAL_PAYLOAD_TOO_LARGE, too_large)
        collapse_id = batch.collapse_key or None
        if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID_BYTES:
            # APNs answers BadCollapseId; a shortened id would collapse unrelated notifications.
            too_long = f"collapse id over {MAX_COLLAPSE_ID_BYTES} bytes"
            return classify_apns_no_answer(LOCAL_BAD_PAYLOAD, too_long)
        return ApnsRequest(
            body=body,
            expiration=None if batch.expires_at is None else int(batch.expires_at),
            device_token=token,
            message=payload,
            notification_id=apns_id_for(batch.notification_id, str(item.get("device_id", ""))),
            priority=apns_priority(batch.priority, payload),
            collapse_key=collapse_id,
            push_type=PushType(push_type(payload)),
        )

    async def _send(self, request: ApnsRequest) -> Verdict:
        assert self._in_flight is not None and self._pool is not None
        async with self._in_flight:
            pool = self._pool
            started = time.monotonic()

            def timed_out() -> None:
                if pool.is_stuck(since=started):
                    self._replace_pool(pool)
                self._log_failure(request, "timeout")

            return await within_deadline(
                self._attempt(request), self.deadline, classify_apns_no_answer, on_timeout=timed_out,
                on_error=lambda: log.exception("APNs: unexpected error for token %s", self._fingerprint(request)),
            )

    async def _attempt(self, request: ApnsRequest) -> Verdict:
        resends = 0
        reconnected = reauthed = False
        while True:
            pool = self._pool
            assert pool is not None
            try:
                connection = await pool.acquire()
            except ApnsConnectError:
                return classify_apns_no_answer(TRANSPORT_CONNECT_FAILED)
            issued_at = pool.token.issued_at
            self.counters.sent += 1
            try:
                result = await connection.send_notification(request)
            except (StreamUnprocessed, NoAvailableStreamIDError) as exc:
                if isinstance(exc, NoAvailableStreamIDError):
                    connection.close()  # stream ids exhausted: this connection is done
                if resends < self.max_resends:
                    resends += 1
                    self.counters.resent += 1
                    continue
                return classify_apns_no_answer(TRANSPORT_UNPROCESSED, str(exc) or None)
            except ConnectionClosed as exc:
                # In flight when the connection died: APNs may have processed it. The agent decides.
                return classify_apns_no_answer(TRANSPORT_CONNECTION_LOST, str(exc) or None)
            status = int(result.status) if result.status.isdigit() else 0
            if status == 0:
                return classify_apns_no_answer(TRANSPORT_ERROR, "answer without a status")
            verdict = classify_apns_answer(status, result.description, result.timestamp,
                                           getattr(result, "retry_after", None))
            if verdict.action is not Action.DELIVERED:
                self._log_failure(request, verdict.reason or str(status))
            if apns_rule(status, result.description).reconnect and not reconnected:
                reconnected = True
                if isinstance(connection, ApnsProtocol):
                    connection.retire()
                self.counters.resent += 1
                continue
            if verdict.action is Action.REAUTH and not reauthed:
                reauthed = True
                if pool.token.renew(issued_at):
                    self.counters.auth_refreshes += 1
                    self.counters.resent += 1
                    continue
            return verdict

    def _replace_pool(self, stuck: ApnsPool) -> None:
        """Swap in a fresh pool; the old one's connections are closed (their in-flight sends fail)."""
        if self._pool is not stuck or self._token is None:
            return  # another send already replaced it
        log.warning("APNs: no answer for %ss on any connection; replacing the connection pool", self.deadline)
        self.counters.reconnects += 1
        self._pool = ApnsPool(self.settings, self._token, self._key_pem)
        stuck.close()

    def _fingerprint(self, request: NotificationRequest) -> str:
        return token_fingerprint(self.platform, request.device_token)

    def _log_failure(self, request: NotificationRequest, reason: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("APNs: %s for token %s (apns-id %s)", reason, self._fingerprint(request),
                      request.notification_id)
