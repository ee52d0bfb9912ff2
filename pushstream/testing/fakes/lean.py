"""Benchmark mode's server path: lean HTTP/2 and HTTP/1.1 on ``asyncio.Protocol``, no per-request task.

Record mode serves through ``h2``/``h11`` (httpserver.py), which checks every frame and header but costs
~0.2 ms of CPU per request; at load-test rates the fake, not the sender, becomes what is measured. This path
keeps the wire protocol valid and cuts the per-request cost to a few tens of µs:
- frames are parsed here; header blocks are decoded by jh2's Rust HPACK decoder;
- answers are HPACK-encoded without the dynamic table (indexed ``:status`` or literals "without indexing"),
  so no encoder state is kept and no Huffman coding is done;
- the handler runs synchronously (no task per request); answers of one read go out in one write.

What it does not do that record mode does: validate header names/values and pseudo-header rules, enforce
receive flow-control windows (it only gives window back), check stream-state transitions beyond what is
needed to stay correct, or decode chunked HTTP/1.1 bodies (answered 411). Send flow control, SETTINGS,
PING, RST_STREAM, GOAWAY (including ``goaway_after``), CONTINUATION and padding are handled.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

from jh2._hazmat import Decoder

from pushstream.testing.fakes.httpserver import Answer, Connection, IncomingRequest

if TYPE_CHECKING:
    from pushstream.testing.fakes.httpserver import HTTPServer

log = logging.getLogger(__name__)

# A lean handler answers at once: the Answer plus the seconds to hold it back (the fake's latency).
LeanHandler = Callable[[IncomingRequest], tuple[Answer, float]]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = (
    range(10)
)
_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20
_NO_ERROR, _PROTOCOL_ERROR, _FLOW_CONTROL_ERROR, _FRAME_SIZE_ERROR, _REFUSED_STREAM, _COMPRESSION_ERROR = (
    0x0,
    0x1,
    0x3,
    0x6,
    0x7,
    0x9,
)
_SETTINGS_HEADER_TABLE_SIZE, _SETTINGS_MAX_CONCURRENT_STREAMS, _SETTINGS_INITIAL_WINDOW_SIZE = 0x1, 0x3, 0x4
_SETTINGS_MAX_FRAME_SIZE, _SETTINGS_MAX_HEADER_LIST_SIZE = 0x5, 0x6
_MAX_FRAME_SIZE = 16384  # ours: the default, never raised
_RECEIVE_WINDOW = 1 << 20  # per stream, advertised in SETTINGS
_CONNECTION_WINDOW = 1 << 30  # connection receive window after our first WINDOW_UPDATE
_MAX_HEADER_LIST_SIZE = 65536
_MAX_H1_HEAD = 65536
_READ_BUFFER = 65536  # per connection
_ENFORCED_STREAM_LIMIT = 1000  # as in httpserver: advertised limits are not enforced below this
_TRAILERS = -1  # stands for the flags of a trailers block in _headers_complete
_STATIC_STATUS = {200: 0x88, 204: 0x89, 206: 0x8A, 304: 0x8B, 400: 0x8C, 404: 0x8D, 500: 0x8E}


class _Coalescing:
    """Read coalescing for the whole process: after a loop turn that read something, sleep briefly.

    Clients that write once per request (aioapns, httpx) otherwise wake the fake for every request, and a
    wake-up costs far more than the request itself. Sleeping ``seconds`` before the next poll lets the
    kernel gather what arrives meanwhile, so the next turn reads many requests at once. Answers are not
    delayed by it (they were written in the turn that read their request); the next requests are, by
    at most ``seconds``. Off (0) unless ``set_read_coalescing`` turns it on: it blocks the whole loop, so
    it suits the fakes' own process, not a loop shared with the client under test.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.scheduled = False

    def nap(self) -> None:
        self.scheduled = False
        time.sleep(self.seconds)


_coalescing = _Coalescing()


def set_read_coalescing(seconds: float) -> None:
    """Sleep up to ``seconds`` after each loop turn that read requests (0 = off); see _Coalescing."""
    if seconds < 0:
        raise ValueError("seconds must be >= 0")
    _coalescing.seconds = seconds


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1 integer with ``first``'s high bits kept."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_string(data: bytes) -> bytes:
    return _hpack_int(len(data), 7, 0) + data  # no Huffman


_status_cache: dict[int, bytes] = {}


def encode_header_block(status: int, headers: list[tuple[str, str]]) -> bytes:
    """A header block that needs no HPACK state: indexed or literal ``:status``, literals without indexing."""
    head = _status_cache.get(status)
    if head is None:
        static = _STATIC_STATUS.get(status)
        # Literal without indexing, name = static entry 8 (":status").
        head = bytes((static,)) if static is not None else b"\x08" + _hpack_string(str(status).encode("ascii"))
        _status_cache[status] = head
    parts = [head]
    for name, value in headers:
        parts.append(b"\x00" + _hpack_string(name.encode("latin-1")) + _hpack_string(value.encode("latin-1")))
    return b"".join(parts)


def lean_protocols(handler: LeanHandler) -> Callable[[HTTPServer, int], LeanProtocol]:
    """What `HTTPServer(lean=...)` takes: one `LeanProtocol` per accepted connection, answering with ``handler``."""
    return lambda server, connection_id: LeanProtocol(server, handler, connection_id)


class LeanProtocol(asyncio.BufferedProtocol):
    """One accepted connection: picks HTTP/2 (ALPN or preface) or HTTP/1.1, then hands bytes to that.

    A buffered protocol, so reads land in one reused buffer: with plain ``data_received`` the TLS layer
    allocates (mmap) and frees a 256 KiB bytes object for every read, which doubled the cost per read.
    """

    def __init__(self, server: HTTPServer, handler: LeanHandler, connection_id: int) -> None:
        self._server = server
        self._handler = handler
        self._connection_id = connection_id
        self._transport: asyncio.Transport | None = None
        self._session: _LeanH2 | _LeanH1 | None = None
        self._head = b""
        self._read_buffer = memoryview(bytearray(_READ_BUFFER))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._read_buffer[:nbytes]))
        if _coalescing.seconds > 0 and not _coalescing.scheduled:
            _coalescing.scheduled = True
            asyncio.get_running_loop().call_soon(_coalescing.nap)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are no subclasses
        self._server.stats.connections += 1
        self._server.lean_connections.add(self._transport)
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if isinstance(ssl_object, ssl.SSLObject) else None
        if alpn == "h2":
            self._start(http2=True)
        elif alpn == "http/1.1":
            self._start(http2=False)

    def _start(self, *, http2: bool) -> None:
        assert self._transport is not None
        server = self._server
        if http2 and server.http2:
            self._session = _LeanH2(server, self._handler, self._connection_id, self._transport)
        elif not http2 and server.http1:
            self._session = _LeanH1(server, self._handler, self._connection_id, self._transport)
        else:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        session = self._session
        if session is not None:
            session.data_received(data)
            return
        head = self._head + data
        if len(head) < len(PREFACE) and PREFACE.startswith(head):
            self._head = head  # could still be the HTTP/2 preface
            return
        self._head = b""
        self._start(http2=head.startswith(PREFACE))
        if self._session is not None:
            self._session.data_received(head)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.lean_connections.discard(self._transport)
        if self._session is not None:
            self._session.connection_lost()


class _LeanH2(Connection):
    def __init__(self, server: HTTPServer, handler: LeanHandler, connection_id: int, transport: asyncio.Transport):
        super().__init__(connection_id)
        self._server = server
        self._handler = handler
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._decoder = Decoder(_MAX_HEADER_LIST_SIZE)
        self._buffer = b""
        self._preface_seen = False
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._closed = False
        # Requests: stream id -> [headers, body]; open streams (received, not yet answered).
        self._partial: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        self._open: set[int] = set()
        self._last_client_stream = 0
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags of HEADERS, block so far
        # Flow control for what we send.
        self._peer_initial_window = 65535
        self._peer_max_frame = 16384
        self._send_window = 65535
        self._stream_windows: dict[int, int] = {}
        self._blocked: list[tuple[int, bytes]] = []  # (stream, body) waiting for window
        # Flow control for what we receive: window given back in chunks.
        self._unacked = 0
        self._stream_unacked: dict[int, int] = {}
        # GOAWAY after N and the APNs stream-limit raise.
        self._taken = 0
        self._draining = False
        self._goaway_last_stream = 0
        self._limit_raised = False
        self._pending_limit: int | None = None
        settings = struct.pack(
            ">HIHIHI",
            _SETTINGS_MAX_CONCURRENT_STREAMS,
            server.advertised_max_streams,
            _SETTINGS_INITIAL_WINDOW_SIZE,
            _RECEIVE_WINDOW,
            _SETTINGS_MAX_HEADER_LIST_SIZE,
            _MAX_HEADER_LIST_SIZE,
        )
        increment = struct.pack(">I", _CONNECTION_WINDOW - 65535)
        transport.write(_frame(_SETTINGS, 0, 0, settings) + _frame(_WINDOW_UPDATE, 0, 0, increment))

    def raise_stream_limit(self, value: int) -> None:
        # Sent right after the answer that earned it (see httpserver._H2Session.raise_stream_limit).
        if not self._limit_raised:
            self._limit_raised = True
            self._pending_limit = value

    # -- receiving ------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        if not self._preface_seen:
            if len(buffer) < len(PREFACE):
                self._buffer = buffer
                return
            if not buffer.startswith(PREFACE):
                self._fail(_PROTOCOL_ERROR, "bad connection preface")
                return
            self._preface_seen = True
            offset = len(PREFACE)
        size = len(buffer)
        frame_handler = self._on_frame
        while size - offset >= 9 and not self._closed:
            length = int.from_bytes(buffer[offset : offset + 3], "big")
            if length > _MAX_FRAME_SIZE:
                self._fail(_FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
                break
            end = offset + 9 + length
            if end > size:
                break
            stream_id = int.from_bytes(buffer[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            frame_handler(buffer[offset + 3], buffer[offset + 4], stream_id, buffer[offset + 9 : end])
            offset = end
        self._buffer = buffer[offset:]
        self._maybe_goaway()
        self._flush()

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is not None and kind != _CONTINUATION:
            self._fail(_PROTOCOL_ERROR, "expected CONTINUATION")
            return
        if kind == _DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == _HEADERS:
            self._on_headers(flags, stream_id, payload)
        elif kind == _CONTINUATION:
            pending = self._continuation
            if pending is None or pending[0] != stream_id:
                self._fail(_PROTOCOL_ERROR, "unexpected CONTINUATION")
                return
            pending[2].extend(payload)
            if flags & _END_HEADERS:
                self._continuation = None
                self._headers_complete(pending[0], pending[1], bytes(pending[2]))
        elif kind == _SETTINGS:
            self._on_settings(flags, stream_id, payload)
        elif kind == _WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == _PING:
            if len(payload) != 8 or stream_id:
                self._fail(_FRAME_SIZE_ERROR if len(payload) != 8 else _PROTOCOL_ERROR, "bad PING")
            elif not flags & _ACK:
                self._out.append(_frame(_PING, _ACK, 0, payload))
        elif kind == _RST_STREAM:
            self._partial.pop(stream_id, None)
            self._open.discard(stream_id)
            self._stream_windows.pop(stream_id, None)
            self._stream_unacked.pop(stream_id, None)
            if self._blocked:
                self._blocked = [entry for entry in self._blocked if entry[0] != stream_id]
        elif kind == _GOAWAY:
            pass  # the client is leaving; answers to streams it already sent still go out
        elif kind == _PUSH_PROMISE:
            self._fail(_PROTOCOL_ERROR, "clients must not push")
        # PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        trailers = False
        if stream_id == 0 or stream_id % 2 == 0 or stream_id <= self._last_client_stream:
            # Trailers (HEADERS with END_STREAM on a stream still being received) are allowed.
            if not (stream_id in self._partial and flags & _END_STREAM):
                self._fail(_PROTOCOL_ERROR, "bad stream id for HEADERS")
                return
            trailers = True
        if flags & _PADDED:
            if not payload or payload[0] >= len(payload):
                self._fail(_PROTOCOL_ERROR, "bad padding")
                return
            payload = payload[1 : len(payload) - payload[0]]
        if flags & _PRIORITY_FLAG:
            payload = payload[5:]
        if not trailers:
            self._last_client_stream = stream_id
        kind = _TRAILERS if trailers else flags
        if flags & _END_HEADERS:
            self._headers_complete(stream_id, kind, payload)
        else:
            self._continuation = (stream_id, kind, bytearray(payload))

    def _headers_complete(self, stream_id: int, flags: int, block: bytes) -> None:
        try:
            decoded = self._decoder.decode(block, raw=False)
        except BaseException as exc:  # jh2 raises HPACKError, or a pyo3 PanicException on garbage
            if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
                raise
            self._fail(_COMPRESSION_ERROR, "header block does not decode")
            return
        if flags == _TRAILERS:  # decoded for the HPACK state's sake, then dropped
            self._finish(stream_id)
            return
        if self._draining and stream_id > self._goaway_last_stream:
            return  # after the GOAWAY cut-off: not processed
        if len(self._open) >= _ENFORCED_STREAM_LIMIT:
            self._out.append(_frame(_RST_STREAM, 0, stream_id, struct.pack(">I", _REFUSED_STREAM)))
            return
        self._partial[stream_id] = ([(str(name), str(value)) for name, value, _ in decoded], bytearray())
        self._open.add(stream_id)
        self._stream_windows[stream_id] = self._peer_initial_window
        stats = self._server.stats
        if len(self._open) > stats.max_concurrent_streams:
            stats.max_concurrent_streams = len(self._open)
        if flags & _END_STREAM:
            self._finish(stream_id)

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        flow_length = len(payload)
        if flow_length:
            self._unacked += flow_length
            if self._unacked >= _CONNECTION_WINDOW // 2:
                self._out.append(_frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", self._unacked)))
                self._unacked = 0
        if flags & _PADDED:
            if not payload or payload[0] >= len(payload):
                self._fail(_PROTOCOL_ERROR, "bad padding")
                return
            payload = payload[1 : len(payload) - payload[0]]
        entry = self._partial.get(stream_id)
        if entry is None:
            if stream_id == 0 or stream_id > self._last_client_stream:
                self._fail(_PROTOCOL_ERROR, "DATA on an idle stream")
            return  # closed or reset stream: ignored (its window was counted above)
        entry[1].extend(payload)
        if not flags & _END_STREAM:
            unacked = self._stream_unacked.get(stream_id, 0) + flow_length
            if unacked >= _RECEIVE_WINDOW // 2:
                self._out.append(_frame(_WINDOW_UPDATE, 0, stream_id, struct.pack(">I", unacked)))
                unacked = 0
            self._stream_unacked[stream_id] = unacked
            return
        self._finish(stream_id)

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id or len(payload) % 6:
            self._fail(_PROTOCOL_ERROR if stream_id else _FRAME_SIZE_ERROR, "bad SETTINGS")
            return
        if flags & _ACK:
            return
        for offset in range(0, len(payload), 6):
            ident, value = struct.unpack_from(">HI", payload, offset)
            if ident == _SETTINGS_INITIAL_WINDOW_SIZE:
                if value > 0x7FFFFFFF:
                    self._fail(_FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
                    return
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for open_stream in self._stream_windows:
                    self._stream_windows[open_stream] += delta
            elif ident == _SETTINGS_MAX_FRAME_SIZE:
                self._peer_max_frame = value
            # HEADER_TABLE_SIZE needs nothing: our answers never use the dynamic table.
        self._out.append(_frame(_SETTINGS, _ACK, 0))
        self._send_blocked()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            self._fail(_FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
            return
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if stream_id == 0:
            self._send_window += increment
        elif stream_id in self._stream_windows:
            self._stream_windows[stream_id] += increment
        if self._blocked:
            self._send_blocked()

    # -- answering ---------------------------------------------------------------------------------------

    def _finish(self, stream_id: int) -> None:
        entry = self._partial.pop(stream_id, None)
        self._stream_unacked.pop(stream_id, None)
        if entry is None:
            return
        raw_headers, body = entry
        method = path = ""
        headers: list[tuple[str, str]] = []
        for name, value in raw_headers:
            if name[0] == ":":
                if name == ":method":
                    method = value
                elif name == ":path":
                    path = value
            else:
                headers.append((name, value))
        self._taken += 1
        limit = self._server.goaway_after
        if limit is not None and self._taken >= limit and not self._draining:
            self._draining = True
            self._goaway_last_stream = max([stream_id, *self._partial])
        try:
            answer, delay = self._handler(IncomingRequest(method, path, headers, bytes(body), "2", self))
        except Exception:
            log.exception("fake handler failed for %s %s", method, path)
            answer, delay = Answer(500, [("content-type", "application/json")], b'{"reason": "InternalServerError"}'), 0
        if delay > 0:
            self._loop.call_later(delay, self._respond_later, stream_id, answer)
        else:
            self._respond(stream_id, answer)

    def _respond_later(self, stream_id: int, answer: Answer) -> None:
        self._respond(stream_id, answer)
        self._maybe_goaway()
        self._flush()

    def _respond(self, stream_id: int, answer: Answer) -> None:
        if self._closed or stream_id not in self._open:
            return  # reset by the client meanwhile
        block = encode_header_block(answer.status, answer.headers)
        body = answer.body
        flags = _END_HEADERS if body else _END_HEADERS | _END_STREAM
        max_frame = self._peer_max_frame
        if len(block) <= max_frame:
            self._out.append(_frame(_HEADERS, flags, stream_id, block))
        else:
            self._out.append(_frame(_HEADERS, flags & ~_END_HEADERS, stream_id, block[:max_frame]))
            for start in range(max_frame, len(block), max_frame):
                last = start + max_frame >= len(block)
                self._out.append(
                    _frame(_CONTINUATION, _END_HEADERS if last else 0, stream_id, block[start:][:max_frame])
                )
        if body:
            if self._blocked or len(body) > self._send_window or len(body) > self._stream_windows[stream_id]:
                self._blocked.append((stream_id, body))
                self._send_blocked()
            else:
                self._send_data(stream_id, body)
        else:
            self._closed_stream(stream_id)
        if self._pending_limit is not None:
            limit = struct.pack(">HI", _SETTINGS_MAX_CONCURRENT_STREAMS, self._pending_limit)
            self._out.append(_frame(_SETTINGS, 0, 0, limit))
            self._pending_limit = None

    def _send_data(self, stream_id: int, body: bytes) -> None:
        self._send_window -= len(body)
        max_frame = self._peer_max_frame
        for start in range(0, len(body), max_frame):
            chunk = body[start : start + max_frame]
            last = start + max_frame >= len(body)
            self._out.append(_frame(_DATA, _END_STREAM if last else 0, stream_id, chunk))
        self._closed_stream(stream_id)

    def _send_blocked(self) -> None:
        while self._blocked:
            stream_id, body = self._blocked[0]
            if len(body) > self._send_window or len(body) > self._stream_windows.get(stream_id, 0):
                return
            self._blocked.pop(0)
            self._send_data(stream_id, body)
        self._maybe_goaway()

    def _closed_stream(self, stream_id: int) -> None:
        self._open.discard(stream_id)
        self._stream_windows.pop(stream_id, None)

    def _maybe_goaway(self) -> None:
        if not self._draining or self._open or self._closed:
            return
        reason = f'{{"reason": "{self._server.goaway_reason}"}}'.encode()
        self._out.append(_frame(_GOAWAY, 0, 0, struct.pack(">II", self._goaway_last_stream, _NO_ERROR) + reason))
        self._server.stats.goaways += 1
        self._close()

    def _fail(self, code: int, message: str) -> None:
        if self._closed:
            return
        payload = struct.pack(">II", self._last_client_stream, code) + message.encode()
        self._out.append(_frame(_GOAWAY, 0, 0, payload))
        self._close()

    def _close(self) -> None:
        self._flush()
        self._closed = True
        self._transport.close()  # buffered frames are still written first

    def _flush(self) -> None:
        if self._out:
            if not self._transport.is_closing():
                self._transport.write(b"".join(self._out))
            self._out.clear()

    def connection_lost(self) -> None:
        self._closed = True


class _LeanH1(Connection):
    def __init__(self, server: HTTPServer, handler: LeanHandler, connection_id: int, transport: asyncio.Transport):
        super().__init__(connection_id)
        self._server = server
        self._handler = handler
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._waiting = False  # an answer is held back (latency): later pipelined requests wait
        self._continued = False  # 100 Continue already sent for the request being read
        self._closed = False

    def data_received(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data
        if not self._waiting:
            self._process()

    def _process(self) -> None:
        out: list[bytes] = []
        while not self._closed and not self._waiting:
            buffer = self._buffer
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buffer) > _MAX_H1_HEAD:
                    self._reject(out, 431)
                break
            lines = buffer[:head_end].decode("latin-1").split("\r\n")
            request_line = lines[0].split(" ")
            if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
                self._reject(out, 400)
                break
            method, path, version = request_line
            headers: list[tuple[str, str]] = []
            length = 0
            keep_alive = version == "HTTP/1.1"
            expect_continue = False
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep or not name or name[-1] in " \t":
                    self._reject(out, 400)
                    return
                name = name.lower()
                value = value.strip()
                headers.append((name, value))
                if name == "content-length":
                    if not value.isdigit():
                        self._reject(out, 400)
                        return
                    length = int(value)
                elif name == "connection":
                    tokens = value.lower()
                    if "close" in tokens:
                        keep_alive = False
                    elif "keep-alive" in tokens:
                        keep_alive = True
                elif name == "transfer-encoding":
                    self._reject(out, 411)  # chunked bodies: record mode (h11) only
                    return
                elif name == "expect" and value.lower() == "100-continue":
                    expect_continue = True
            body_end = head_end + 4 + length
            if len(buffer) < body_end:
                if expect_continue and not self._continued:
                    self._continued = True
                    out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
                break
            self._continued = False
            body = buffer[head_end + 4 : body_end]
            self._buffer = buffer[body_end:]
            try:
                answer, delay = self._handler(IncomingRequest(method, path, headers, body, "1.1", self))
            except Exception:
                log.exception("fake handler failed for %s %s", method, path)
                answer = Answer(500, [("content-type", "application/json")], b'{"reason": "InternalServerError"}')
                delay = 0.0
            if delay > 0:
                self._waiting = True
                self._loop.call_later(delay, self._respond_later, answer, keep_alive)
                break
            out.append(_h1_response(answer, keep_alive))
            if not keep_alive:
                self._write(out)
                self._close()
                return
        self._write(out)

    def _respond_later(self, answer: Answer, keep_alive: bool) -> None:
        self._waiting = False
        if self._closed:
            return
        self._write([_h1_response(answer, keep_alive)])
        if not keep_alive:
            self._close()
        elif self._buffer:
            self._process()

    def _reject(self, out: list[bytes], status: int) -> None:
        out.append(_h1_response(Answer(status, []), keep_alive=False))
        self._write(out)
        out.clear()
        self._close()

    def _write(self, out: list[bytes]) -> None:
        if out and not self._transport.is_closing():
            self._transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _close(self) -> None:
        self._closed = True
        self._transport.close()

    def connection_lost(self) -> None:
        self._closed = True


_phrases: dict[int, bytes] = {}


def _h1_response(answer: Answer, keep_alive: bool) -> bytes:
    status_line = _phrases.get(answer.status)
    if status_line is None:
        try:
            phrase = HTTPStatus(answer.status).phrase
        except ValueError:
            phrase = "Unknown"
        status_line = _phrases[answer.status] = f"HTTP/1.1 {answer.status} {phrase}\r\n".encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in answer.headers)
    tail = f"content-length: {len(answer.body)}\r\n" + ("" if keep_alive else "connection: close\r\n") + "\r\n"
    return status_line + (head + tail).encode("latin-1") + answer.body
