"""A small HTTP/2 client over asyncio for the APNs and FCM senders: framing by hand, HPACK in Rust (jh2).

Why not h2/httpx: their per-request state machines cost 200-900 µs of CPU per push (sending-tier-reference.md
§2); this layer does only what a request/response client needs and spends no Python per byte:
- frames are built with one ``struct.pack`` each and everything pending goes out in one ``transport.write``
  per loop turn (many small TLS records triple the server's CPU too);
- HPACK is ``jh2._hazmat``; constant headers (``authorization``, topic, content-type) are indexed, so a
  ~230-byte JWT costs one byte per request after the first; per-request values are never-indexed literals.

Protocol behaviour (RFC 9113):
- client preface + SETTINGS (no push, 1 MiB stream windows) + a connection WINDOW_UPDATE; a connection is
  ready once the peer's first SETTINGS arrived (so its MAX_CONCURRENT_STREAMS is known before any request);
- peer SETTINGS: MAX_CONCURRENT_STREAMS (raised or lowered at any time; requests over the limit wait in
  the connection's queue), INITIAL_WINDOW_SIZE (open streams adjusted by the delta), MAX_FRAME_SIZE,
  HEADER_TABLE_SIZE; each acknowledged. PING is answered;
- send flow control on the connection and per stream (bodies wait for WINDOW_UPDATE); received DATA is
  given back in steps (connection and stream), so error bodies can never stall a connection;
- responses: HEADERS (+CONTINUATION, padding, priority, 1xx skipped, trailers), DATA, END_STREAM;
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
import contextlib
import logging
import ssl
import struct
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import cast

from jh2._hazmat import Decoder, Encoder, HPACKError

log = logging.getLogger(__name__)

Header = tuple[bytes, bytes, bool]  # name, value, sensitive (True: never-indexed literal)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
# Flags.
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# Settings.
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE = 1, 2, 3, 4, 5
# Error codes.
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = (
    0x0, 0x1, 0x3, 0x6, 0x7, 0x8, 0x9,
)

DEFAULT_WINDOW = 65535
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
# Our receive windows. Streams get 1 MiB (answers are small); the connection 16 MiB, given back in 4 MiB steps.
STREAM_RECEIVE_WINDOW = 1 << 20
CONNECTION_RECEIVE_WINDOW = 16 << 20
RECEIVE_WINDOW_STEP = 4 << 20
MAX_HEADER_BLOCK = 256 * 1024  # a peer sending more header bytes than this for one answer is broken

_FRAME_HEADER = struct.Struct(">BHBBI")  # 24-bit length as 8+16 bits, type, flags, stream id
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")
_GOAWAY = struct.Struct(">II")


class H2TransportError(Exception):
    """Base of the errors a request can end with."""


class StreamUnprocessed(H2TransportError):
    """The peer provably did not process the request (GOAWAY above last_stream_id, REFUSED_STREAM, or never
    written): safe to resend on another connection."""


class StreamLost(H2TransportError):
    """The request was in flight when its stream or connection ended: the peer may have processed it."""


class ConnectFailed(H2TransportError):
    """No usable HTTP/2 connection could be opened (refused, TLS failure, no h2, no SETTINGS in time)."""


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    n = len(payload)
    return _FRAME_HEADER.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


class Response:
    """A complete answer: ``:status``, the other headers (lower-case names, raw bytes) and the body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        """First value of a header (lower-case name), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Stream:
    __slots__ = (
        "body", "future", "headers", "id", "offset", "received", "recv_unacked", "resp_headers", "send_window",
        "status",
    )

    def __init__(self, headers: list[Header], body: bytes, future: asyncio.Future[Response]) -> None:
        self.id = 0  # assigned when started
        self.headers = headers
        self.body = body
        self.offset = 0  # bytes of body sent
        self.future = future
        self.send_window = 0
        self.status = 0
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.received = bytearray()
        self.recv_unacked = 0


class H2Connection(asyncio.Protocol):
    """One HTTP/2 client connection. Use ``await request(headers, body)``; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()  # set when the peer's first SETTINGS arrive
        self.going_away = False  # GOAWAY received/sent or retired: takes no new requests
        self.closed = False
        self.last_answer = 0.0  # monotonic time of the last frame that answered a stream
        self.on_close: Callable[[H2Connection], None] | None = None  # once, when it stops taking requests
        self.transport: asyncio.Transport | None = None
        self._encoder = Encoder()
        self._decoder = Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_BLOCK
        self._next_id = 1
        self._streams: dict[int, _Stream] = {}  # started, not yet answered
        self._queue: deque[_Stream] = deque()  # waiting for a stream slot
        self._blocked: deque[_Stream] = deque()  # started, body waiting for flow-control window
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._inbuf = bytearray()
        self._header_block: tuple[int, int, bytearray] | None = None  # stream id, flags, partial block
        # Peer settings (RFC 9113 defaults until its SETTINGS arrive).
        self.max_streams = 1
        self._peer_initial_window = DEFAULT_WINDOW
        self._max_frame = 16384
        self._send_window = DEFAULT_WINDOW  # connection send window
        self._recv_unacked = 0  # connection receive bytes not yet given back
        self._last_peer_stream = 0  # we accept no peer-initiated streams (no push)

    # -- state -----------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests started or queued on this connection and not yet ended."""
        return len(self._streams) + len(self._queue)

    @property
    def has_capacity(self) -> bool:
        """True when a new request would start at once."""
        return not self.going_away and len(self._streams) + len(self._queue) < self.max_streams

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        settings = _SETTING.pack(S_ENABLE_PUSH, 0) + _SETTING.pack(S_INITIAL_WINDOW_SIZE, STREAM_RECEIVE_WINDOW)
        increment = CONNECTION_RECEIVE_WINDOW - DEFAULT_WINDOW
        self.transport.write(PREFACE + frame(SETTINGS, 0, 0, settings)
                             + frame(WINDOW_UPDATE, 0, 0, _U32.pack(increment)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._leave()
        reason = str(exc) if exc else "connection closed"
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed(reason))
        streams, self._streams = self._streams, {}
        self._blocked.clear()
        for stream in streams.values():
            if not stream.future.done():
                stream.future.set_exception(StreamLost(reason))
        self._fail_queue(StreamUnprocessed(reason))

    def data_received(self, data: bytes) -> None:
        buf = self._inbuf
        buf += data
        pos = 0
        end = len(buf)
        unpack = _FRAME_HEADER.unpack_from
        try:
            while end - pos >= 9:
                hi, lo, ftype, flags, stream_id = unpack(buf, pos)
                length = (hi << 16) | lo
                if end - pos - 9 < length:
                    break
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._on_frame(ftype, flags, stream_id & 0x7FFFFFFF, payload)
                if self.closed:
                    return
        except _ProtocolError as exc:
            log.warning("HTTP/2 protocol error from the peer, closing the connection: %s", exc)
            self._abort(exc.code, str(exc))
            return
        del buf[:pos]

    # -- requests --------------------------------------------------------------------------------------

    async def request(self, headers: list[Header], body: bytes = b"") -> Response:
        """Send one request (pseudo-headers first, in ``headers``) and wait for its complete answer."""
        if self.going_away or self.closed:
            raise StreamUnprocessed("connection is going away")
        stream = _Stream(headers, body, self.loop.create_future())
        if len(self._streams) < self.max_streams and not self._queue:
            self._start(stream)
        else:
            self._queue.append(stream)
        try:
            return await stream.future
        except asyncio.CancelledError:
            self._cancel(stream)
            raise

    def _start(self, stream: _Stream) -> None:
        stream_id = self._next_id
        if stream_id > MAX_STREAM_ID:
            stream.future.set_exception(StreamUnprocessed("stream ids exhausted"))
            self.retire()
            return
        self._next_id += 2
        stream.id = stream_id
        stream.send_window = self._peer_initial_window
        self._streams[stream_id] = stream
        try:
            block = self._encoder.encode(stream.headers)
        except HPACKError as exc:  # a header value HPACK refuses: nothing went out, but the table may be off
            del self._streams[stream_id]
            stream.future.set_exception(H2TransportError(f"HPACK: {exc}"))
            self.retire()
            return
        stream.headers = []
        out = self._out
        flags = 0 if stream.body else END_STREAM
        limit = self._max_frame
        if len(block) <= limit:
            out.append(frame(HEADERS, flags | END_HEADERS, stream_id, block))
        else:
            out.append(frame(HEADERS, flags, stream_id, block[:limit]))
            for at in range(limit, len(block), limit):
                last = at + limit >= len(block)
                out.append(frame(CONTINUATION, END_HEADERS if last else 0, stream_id, block[at : at + limit]))
        if stream.body:
            self._send_body(stream)
        self._schedule_flush()

    def _send_body(self, stream: _Stream) -> bool:
        """Write as much of the body as the windows allow; False (and queued in _blocked) if not all."""
        body = stream.body
        total = len(body)
        out = self._out
        while stream.offset < total:
            n = min(total - stream.offset, self._send_window, stream.send_window, self._max_frame)
            if n <= 0:
                if stream not in self._blocked:
                    self._blocked.append(stream)
                return False
            start = stream.offset
            stream.offset = start + n
            self._send_window -= n
            stream.send_window -= n
            chunk = body if n == total else body[start : start + n]
            out.append(frame(DATA, END_STREAM if stream.offset == total else 0, stream.id, chunk))
        stream.body = b""
        return True

    def _unblock(self) -> None:
        blocked, self._blocked = self._blocked, deque()
        for stream in blocked:  # in order; each one still short of window queues itself again
            if stream.id in self._streams and stream.body:
                if self._send_window <= 0:
                    self._blocked.append(stream)
                else:
                    self._send_body(stream)
        self._schedule_flush()

    def _start_queued(self) -> None:
        queue = self._queue
        while queue and len(self._streams) < self.max_streams and not self.going_away:
            stream = queue.popleft()
            if not stream.future.done():  # skip requests whose caller gave up (deadline)
                self._start(stream)

    def _cancel(self, stream: _Stream) -> None:
        if stream.id == 0:
            with contextlib.suppress(ValueError):
                self._queue.remove(stream)
            return
        if self._streams.pop(stream.id, None) is not None and not self.closed:
            self._out.append(frame(RST_STREAM, 0, stream.id, _U32.pack(CANCEL)))
            self._schedule_flush()
            self._stream_done()

    def _stream_done(self) -> None:
        if self._queue:
            self._start_queued()
        if self.going_away and not self._streams:
            self.close()

    # -- writing ---------------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        self._out = []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))

    # -- reading ---------------------------------------------------------------------------------------

    def _on_frame(self, ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._header_block is not None and ftype != CONTINUATION:
            raise _ProtocolError(PROTOCOL_ERROR, "expected CONTINUATION")
        if ftype == HEADERS:
            if not stream_id:
                raise _ProtocolError(PROTOCOL_ERROR, "HEADERS on stream 0")
            payload = _unpad(flags, payload)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if flags & END_HEADERS:
                self._on_headers(stream_id, flags, payload)
            else:
                self._header_block = (stream_id, flags, bytearray(payload))
        elif ftype == DATA:
            self._on_data(stream_id, flags, payload)
        elif ftype == CONTINUATION:
            block = self._header_block
            if block is None or block[0] != stream_id:
                raise _ProtocolError(PROTOCOL_ERROR, "unexpected CONTINUATION")
            block[2].extend(payload)
            if len(block[2]) > MAX_HEADER_BLOCK:
                raise _ProtocolError(PROTOCOL_ERROR, "header block too large")
            if flags & END_HEADERS:
                self._header_block = None
                self._on_headers(stream_id, block[1], bytes(block[2]))
        elif ftype == SETTINGS:
            if not flags & ACK:
                self._on_settings(payload)
        elif ftype == WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif ftype == PING:
            if not flags & ACK and len(payload) == 8:
                self._out.append(frame(PING, ACK, 0, payload))
                self._schedule_flush()
        elif ftype == RST_STREAM:
            self._on_reset(stream_id, payload)
        elif ftype == GOAWAY:
            self._on_goaway(payload)
        elif ftype == PUSH_PROMISE:
            raise _ProtocolError(PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")
        # PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5).

    def _on_headers(self, stream_id: int, flags: int, block: bytes) -> None:
        try:
            fields = self._decoder.decode(block, raw=True)  # always decoded: the HPACK state depends on it
        except Exception as exc:  # HPACKError, OversizedHeaderListError
            raise _ProtocolError(COMPRESSION_ERROR, f"HPACK: {exc}") from exc
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # a stream we reset or never had
        self.last_answer = time.monotonic()
        if not stream.status:
            status = 0
            headers = stream.resp_headers
            for name, value, _ in fields:
                if name == b":status":
                    status = int(value)
                elif name[:1] != b":":
                    headers.append((name, value))  # type: ignore[arg-type]
            if 100 <= status < 200:
                headers.clear()  # informational (e.g. 100 Continue): the final answer follows
            else:
                stream.status = status or 0
                if not status:
                    self._end(stream, StreamLost("answer without :status"))
                    return
        # else: trailers, nothing in them matters here
        if flags & END_STREAM:
            self._end(stream)

    def _on_data(self, stream_id: int, flags: int, payload: bytes) -> None:
        size = len(payload)
        if size:
            self._recv_unacked += size
            if self._recv_unacked >= RECEIVE_WINDOW_STEP:
                self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_unacked)))
                self._recv_unacked = 0
                self._schedule_flush()
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self.last_answer = time.monotonic()
        data = _unpad(flags, payload)
        if data:
            stream.received += data
        if flags & END_STREAM:
            self._end(stream)
        elif size:
            stream.recv_unacked += size
            if stream.recv_unacked >= STREAM_RECEIVE_WINDOW // 2:
                self._out.append(frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.recv_unacked)))
                stream.recv_unacked = 0
                self._schedule_flush()

    def _end(self, stream: _Stream, exc: Exception | None = None) -> None:
        if self._streams.pop(stream.id, None) is None:
            return
        if not stream.future.done():
            if exc is not None:
                stream.future.set_exception(exc)
            elif not stream.status:
                stream.future.set_exception(StreamLost("stream ended without an answer"))
            else:
                stream.future.set_result(Response(stream.status, stream.resp_headers, bytes(stream.received)))
        if exc is not None and not self.closed:  # we end it early: tell the peer
            self._out.append(frame(RST_STREAM, 0, stream.id, _U32.pack(CANCEL)))
            self._schedule_flush()
        self._stream_done()

    def _on_settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise _ProtocolError(FRAME_SIZE_ERROR, "SETTINGS length")
        for at in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, at)
            if key == S_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
            elif key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ProtocolError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
            elif key == S_MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    raise _ProtocolError(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self._max_frame = value
            elif key == S_HEADER_TABLE_SIZE:
                self._encoder.header_table_size = min(value, 4096)
        self._out.append(frame(SETTINGS, ACK, 0))
        if not self.ready.done():
            self.ready.set_result(None)
        self._unblock()  # schedules the flush
        self._start_queued()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ProtocolError(FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise _ProtocolError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise _ProtocolError(FLOW_CONTROL_ERROR, "connection window overflow")
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
        if self._blocked:
            self._unblock()

    def _on_reset(self, stream_id: int, payload: bytes) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or len(payload) != 4:
            return
        code = _U32.unpack(payload)[0]
        self.last_answer = time.monotonic()
        self._streams.pop(stream_id)
        if not stream.future.done():
            # RFC 9113 §8.7: REFUSED_STREAM guarantees the request was not processed.
            exc_type = StreamUnprocessed if code == REFUSED_STREAM else StreamLost
            stream.future.set_exception(exc_type(f"stream reset by the peer: error code {code}"))
        self._stream_done()

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise _ProtocolError(FRAME_SIZE_ERROR, "GOAWAY length")
        last_stream_id, code = _GOAWAY.unpack_from(payload)
        last_stream_id &= 0x7FFFFFFF
        log.warning("HTTP/2 GOAWAY: error_code=%s last_stream_id=%s data=%r", code, last_stream_id, payload[8:208])
        self.going_away = True
        self._leave()
        unprocessed = StreamUnprocessed(f"GOAWAY last_stream_id={last_stream_id}")
        for stream_id in [s for s in self._streams if s > last_stream_id]:
            stream = self._streams.pop(stream_id)
            if not stream.future.done():
                stream.future.set_exception(unprocessed)
        self._fail_queue(unprocessed)
        if not self._streams:  # nothing left to wait for; streams <= last_stream_id still get answers
            self.close()

    # -- ending ----------------------------------------------------------------------------------------

    def retire(self) -> None:
        """Take no new requests; queued ones fail as unprocessed; close once the started ones are answered."""
        if self.going_away:
            return
        self.going_away = True
        self._leave()
        self._fail_queue(StreamUnprocessed("connection retired"))
        if not self._streams:
            self.close()

    def close(self, code: int = NO_ERROR, debug: bytes = b"") -> None:
        """Say GOAWAY and close; requests still in flight fail with StreamLost."""
        self.going_away = True
        self._leave()
        transport = self.transport
        if transport is not None and not self.closed and not transport.is_closing():
            self._out.append(frame(GOAWAY, 0, 0, _GOAWAY.pack(self._last_peer_stream, code) + debug[:200]))
            self._flush()
            transport.close()

    def _abort(self, code: int, reason: str) -> None:
        self.close(code, reason.encode())

    def _leave(self) -> None:
        callback, self.on_close = self.on_close, None
        if callback is not None:
            callback(self)

    def _fail_queue(self, exc: Exception) -> None:
        queue, self._queue = self._queue, deque()
        for stream in queue:
            if not stream.future.done():
                stream.future.set_exception(exc)


class _ProtocolError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise _ProtocolError(PROTOCOL_ERROR, "bad padding")
    return payload[1 : len(payload) - payload[0]]


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
