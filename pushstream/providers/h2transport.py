"""A small HTTP/2 client over asyncio for the APNs and FCM senders: framing by hand, HPACK in Rust (jh2).

Why not h2/httpx: their per-request state machines cost 200-900 µs of CPU per push (sending-tier-reference.md
§2); this layer does only what a request/response client needs and spends no Python per byte:
- frames are built with one ``struct.pack`` each and everything pending goes out in one ``transport.write``
  per loop turn (many small TLS records triple the server's CPU too);
- HPACK is ``jh2._hazmat``; constant headers (``authorization``, topic, content-type) are indexed, so a
  ~230-byte JWT costs one byte per request after the first; per-request values are never-indexed literals.

Protocol behaviour (RFC 9113), all of it in the sans-IO ``h2state.H2State``, which ``H2Connection`` drives:
- client preface + SETTINGS (no push, 1 MiB stream windows) + a connection WINDOW_UPDATE; a connection is
  ready once the peer's first SETTINGS arrived (so its MAX_CONCURRENT_STREAMS is known before any request);
- peer SETTINGS: MAX_CONCURRENT_STREAMS (raised or lowered at any time; requests over the limit wait in
  the connection's queue), INITIAL_WINDOW_SIZE (open streams adjusted by the delta), MAX_FRAME_SIZE,
  HEADER_TABLE_SIZE; each acknowledged. PING is answered;
- send flow control on the connection and per stream (bodies wait for WINDOW_UPDATE); received DATA is
  given back in steps (connection and stream), so error bodies can never stall a connection;
- responses: HEADERS (+CONTINUATION, padding, priority, 1xx skipped, trailers), DATA, END_STREAM;
- a peer that breaks the protocol (a bad frame size, DATA on a stream never opened, a header block HPACK
  cannot decode) gets GOAWAY with the matching error code and the connection closes;
- RST_STREAM: REFUSED_STREAM → ``StreamUnprocessed`` (safe to resend), otherwise ``StreamLost``;
- GOAWAY: streams above last_stream_id and queued requests fail with ``StreamUnprocessed``; streams at or
  below it still get their answers; the connection takes nothing new and closes once idle;
- connection loss: in-flight requests fail with ``StreamLost`` (ambiguous: maybe processed), queued ones
  with ``StreamUnprocessed``;
- a cancelled request (a deadline) is reset with RST_STREAM(CANCEL) and frees its stream at once.
TLS with ALPN h2, or cleartext with prior knowledge (h2c). Server push is refused (ENABLE_PUSH=0).

Nothing here starts threads or a foreign runtime (jh2 is a plain pyo3 extension), so unlike the Rust HTTP
clients measured in sending-tier-reference.md there is no abort at interpreter exit; ``H2Pool.close()``
closes every socket at once, including connections still draining after GOAWAY or retirement.
"""


from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from collections.abc import Callable, Sequence
from typing import cast

from pushstream.providers.h2state import (
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    Ended,
    H2State,
    H2TransportError,
    Header,
    Response,
    StreamLost,
    StreamUnprocessed,
    frame,
)

__all__ = [
    "ACK", "CANCEL", "CONTINUATION", "DATA", "END_HEADERS", "END_STREAM", "GOAWAY", "HEADERS", "NO_ERROR", "PADDED",
    "PING", "PREFACE", "PRIORITY_FLAG", "PROTOCOL_ERROR", "REFUSED_STREAM", "RST_STREAM", "SETTINGS",
    "WINDOW_UPDATE", "ConnectFailed", "H2Connection", "H2Pool", "H2TransportError", "Header", "Response",
    "StreamLost", "StreamUnprocessed", "connect", "frame",
]

log = logging.getLogger(__name__)


class ConnectFailed(H2TransportError):
    """No usable HTTP/2 connection could be opened (refused, TLS failure, no h2, no SETTINGS in time)."""


class H2Connection(asyncio.Protocol):
    """One HTTP/2 client connection. Use ``await request(headers, body)``; see the module docstring.

    The protocol is `h2state.H2State` (``self.state``); this adapter owns the rest: the transport, one
    write per loop turn, a future per request, the ``ready`` future, ``on_close`` and ``last_answer``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()  # set when the peer's first SETTINGS arrive
        self.closed = False
        self.last_answer = 0.0  # monotonic time of the last frame that answered a stream
        self.on_close: Callable[[H2Connection], None] | None = None  # once, when it stops taking requests
        self.transport: asyncio.Transport | None = None
        # A queued request whose future is done (its deadline passed) is never started.
        self.state = H2State(abandoned=asyncio.Future.done)
        self._flush_scheduled = False
        self._error_logged = self._goaway_logged = False  # each logged once

    # -- state -----------------------------------------------------------------------------------------

    @property
    def going_away(self) -> bool:
        """GOAWAY received or sent, or retired: takes no new requests."""
        return self.state.going_away

    @property
    def max_streams(self) -> int:
        """The peer's MAX_CONCURRENT_STREAMS (1 until its SETTINGS arrive)."""
        return self.state.max_streams

    @property
    def in_flight(self) -> int:
        """Requests started or queued on this connection and not yet ended."""
        state = self.state
        return len(state.streams) + len(state.queue)

    @property
    def has_capacity(self) -> bool:
        """True when a new request would start at once."""
        state = self.state
        return not state.going_away and len(state.streams) + len(state.queue) < state.max_streams

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.state.initiate()
        self.transport.write(self.state.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._leave()
        reason = str(exc) if exc else "connection closed"
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed(reason))
        self._resolve(self.state.connection_lost(reason))

    def data_received(self, data: bytes) -> None:
        state = self.state
        answered = state.answered
        connecting = not state.settings_received
        ended = state.receive(data)
        if state.answered != answered:
            self.last_answer = time.monotonic()
        if ended:
            self._resolve(ended)
        if state.going_away or connecting:
            self._on_condition()  # rare: not ready yet, GOAWAY, a protocol error, closing
        elif state.out and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    # -- requests --------------------------------------------------------------------------------------

    async def request(self, headers: list[Header], body: bytes = b"") -> Response:
        """Send one request (pseudo-headers first, in ``headers``) and wait for its complete answer."""
        state = self.state
        if state.going_away or self.closed:
            raise StreamUnprocessed("connection is going away")
        future: asyncio.Future[Response] = self.loop.create_future()
        stream = state.submit(headers, body, future)
        if state.ended or state.going_away:
            self._settle()  # refused locally (HPACK, stream ids exhausted): the connection retires
        elif state.out and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        try:
            return await future
        except asyncio.CancelledError:
            if not self.closed:
                state.cancel(stream)
                self._settle()
            raise

    @staticmethod
    def _resolve(ended: Sequence[Ended]) -> None:
        for future, outcome in ended:
            if not future.done():
                if type(outcome) is Response:
                    future.set_result(outcome)
                else:
                    future.set_exception(outcome)

    def _settle(self) -> None:
        """After an input: resolve what ended, follow the connection's condition, schedule the write."""
        state = self.state
        if state.ended:
            self._resolve(state.take_ended())
        if state.going_away:
            self._on_condition()
        elif state.out and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _on_condition(self) -> None:
        state = self.state
        if state.settings_received and not self.ready.done():
            self.ready.set_result(None)
        if state.error is not None and not self._error_logged:
            self._error_logged = True
            log.warning("HTTP/2 protocol error from the peer, closing the connection: %s", state.error)
        if state.goaway is not None and not self._goaway_logged:
            self._goaway_logged = True
            last_stream_id, code, debug = state.goaway
            log.warning("HTTP/2 GOAWAY: error_code=%s last_stream_id=%s data=%r", code, last_stream_id, debug)
        if state.going_away:
            self._leave()
        if state.closing:
            self._close_transport()
        elif state.out and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    # -- writing ---------------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.state.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def _close_transport(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed and not transport.is_closing():
            self._flush()  # our GOAWAY goes out first
            transport.close()

    # -- ending ----------------------------------------------------------------------------------------

    def retire(self) -> None:
        """Take no new requests; queued ones fail as unprocessed; close once the started ones are answered."""
        if self.state.going_away:
            return
        self.state.retire()
        self._settle()

    def close(self, code: int = NO_ERROR, debug: bytes = b"") -> None:
        """Say GOAWAY and close; requests still in flight fail with StreamLost."""
        self.state.close(code, debug)
        self._leave()
        self._close_transport()

    def _leave(self) -> None:
        callback, self.on_close = self.on_close, None
        if callback is not None:
            callback(self)


async def connect(
    host: str, port: int, *, ssl_context: ssl.SSLContext | None, timeout: float, server_hostname: str | None = None,
) -> H2Connection:
    """Open a connection (TLS with ALPN h2, or h2c when ``ssl_context`` is None) and wait for its SETTINGS."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, connection = await loop.create_connection(
                lambda: H2Connection(loop), host, port, ssl=ssl_context,
                server_hostname=(server_hostname or host) if ssl_context is not None else None,
            )
            if ssl_context is not None:
                ssl_object = transport.get_extra_info("ssl_object")
                alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
                if alpn not in (None, "h2"):
                    transport.close()
                    raise ConnectFailed(f"server chose {alpn} instead of h2")
            try:
                await connection.ready
            except BaseException:
                transport.close()
                raise
    except ConnectFailed:
        raise
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
    return connection


class H2Pool:
    """Up to ``max_connections`` connections to one origin, opened on demand.

    ``acquire`` returns a connection with a free stream, else opens one (while under the limit or when
    none is usable), else the least loaded one: the request then waits in that connection's queue, which
    GOAWAY and connection loss empty with StreamUnprocessed, so the caller resends elsewhere.
    """

    def __init__(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None, max_connections: int,
        connect_timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_connections = max(1, max_connections)
        self.connect_timeout = connect_timeout
        self.connections: list[H2Connection] = []
        self._draining: weakref.WeakSet[H2Connection] = weakref.WeakSet()  # left the pool, answers pending
        self.opened = 0  # connections opened (for metrics and tests)
        self._lock = asyncio.Lock()
        self._closed = False

    def ready_connection(self) -> H2Connection | None:
        """A connection with a free stream right now, if any (``acquire`` without a coroutine)."""
        for connection in self.connections:
            if connection.has_capacity:
                return connection
        return None

    async def acquire(self) -> H2Connection:
        """A connection to send on (see the class docstring); ConnectFailed if none can be opened."""
        for connection in self.connections:
            if connection.has_capacity:
                return connection
        async with self._lock:
            for connection in self.connections:
                if connection.has_capacity:
                    return connection
            if self._closed:
                raise ConnectFailed("pool closed")
            if len(self.connections) < self.max_connections or not self.connections:
                connection = await connect(self.host, self.port, ssl_context=self.ssl_context,
                                           timeout=self.connect_timeout)
                if self._closed:
                    connection.close()
                    raise ConnectFailed("pool closed")
                self.opened += 1
                connection.on_close = self._discard
                self.connections.append(connection)
                return connection
        return min(self.connections, key=lambda c: c.in_flight - c.max_streams)

    def _discard(self, connection: H2Connection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        if not connection.closed:
            self._draining.add(connection)

    def is_stuck(self, since: float) -> bool:
        """True when no connection answered anything since ``since`` (monotonic): hung, not just busy."""
        return not any(c.last_answer >= since for c in self.connections)

    def close(self) -> None:
        """Close every connection (their in-flight requests fail with StreamLost)."""
        self._closed = True
        for connection in [*self.connections, *self._draining]:
            connection.close()
        self.connections.clear()
