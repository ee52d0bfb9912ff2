"""The HTTP/2 client protocol state of one connection, sans I/O: bytes in, answers and bytes to write out.

`H2State` does what RFC 9113 asks of a request/response client (the behaviour list is in h2transport's
docstring): framing, HPACK (jh2), the stream table and its queue under the peer's MAX_CONCURRENT_STREAMS,
send and receive flow control, SETTINGS, PING, RST_STREAM and GOAWAY. It knows nothing of asyncio, sockets,
futures or clocks: `h2transport.H2Connection` feeds it the bytes it reads, writes what `data_to_send` returns
and turns `ended` into future results. Each request carries an opaque ``token`` (the adapter's future) that
comes back in ``ended`` beside its outcome, a `Response` or the `H2TransportError` it failed with.

Per request it allocates what the asyncio version did (a stream, the frames, one ``(token, outcome)`` tuple);
frames are dispatched by direct method calls, never as event objects.
"""

from __future__ import annotations

import contextlib
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from jh2._hazmat import Decoder, Encoder, HPACKError

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


Outcome = Response | H2TransportError
Ended = tuple[Any, Outcome]  # (the request's token, how it ended)


class ProtocolError(Exception):
    """The peer broke RFC 9113: the connection ends with GOAWAY(``code``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stream:
    """One request: queued (``id`` 0) or started, until it ends."""

    __slots__ = (
        "body", "headers", "id", "offset", "received", "recv_unacked", "resp_headers", "send_window", "status",
        "token",
    )

    def __init__(self, headers: list[Header], body: bytes, token: Any) -> None:
        self.id = 0  # assigned when started
        self.headers = headers
        self.body = body
        self.offset = 0  # bytes of body sent
        self.token = token
        self.send_window = 0
        self.status = 0
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.received = bytearray()
        self.recv_unacked = 0


def _never(token: Any) -> bool:
    return False


class H2State:
    """The client side of one HTTP/2 connection, without I/O (see the module docstring).

    Inputs: `initiate` (once, when the connection is up), `submit`, `cancel`, `receive`, `retire`, `close`,
    `connection_lost`. Outputs: `data_to_send` (bytes to write, in order), `ended` (requests that ended,
    taken with `take_ended`), and the connection's condition: ``settings_received`` (the peer's first
    SETTINGS arrived: ready), ``going_away`` (takes no new requests), ``goaway`` (the peer's last_stream_id,
    error code and debug data), ``error`` (the peer broke the protocol), ``closing`` (we said GOAWAY: close
    the socket once written), ``answered`` (a count of frames that answered a stream, to tell hung from busy).

    ``abandoned(token)`` tells whether a queued request's caller gave up already (its deadline passed before
    it got a stream): such a request is never started.
    """

    def __init__(self, abandoned: Callable[[Any], bool] = _never) -> None:
        self.abandoned = abandoned
        self.settings_received = False
        self.going_away = False
        self.closing = False
        self.goaway: tuple[int, int, bytes] | None = None
        self.error: ProtocolError | None = None
        self.answered = 0
        self.ended: list[Ended] = []
        self.streams: dict[int, Stream] = {}  # started, not yet answered
        self.queue: deque[Stream] = deque()  # waiting for a stream slot
        self._blocked: deque[Stream] = deque()  # started, body waiting for flow-control window
        self.out: list[bytes] = []
        self._encoder = Encoder()
        self._decoder = Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_BLOCK
        self._next_id = 1
        self._inbuf = bytearray()
        self._header_block: tuple[int, int, bytearray] | None = None  # stream id, flags, partial block
        # Peer settings (RFC 9113 defaults until its SETTINGS arrive).
        self.max_streams = 1
        self._peer_initial_window = DEFAULT_WINDOW
        self.max_frame = 16384
        self.send_window = DEFAULT_WINDOW  # connection send window
        self._recv_unacked = 0  # connection receive bytes not yet given back
        self._last_peer_stream = 0  # we accept no peer-initiated streams (no push)

    # -- outputs ---------------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything written since the last call, as one buffer (b"" when nothing)."""
        out = self.out
        if not out:
            return b""
        self.out = []
        return b"".join(out)

    def take_ended(self) -> Sequence[Ended]:
        """The requests that ended since the last call, with their outcomes (``()`` when none)."""
        ended = self.ended
        if not ended:
            return ()  # not the list itself: later inputs append to it
        self.ended = []
        return ended

    @property
    def in_flight(self) -> int:
        """Requests started or queued and not yet ended."""
        return len(self.streams) + len(self.queue)

    # -- inputs ----------------------------------------------------------------------------------------

    def initiate(self) -> None:
        """The client preface, our SETTINGS (no push, 1 MiB stream windows) and the connection window."""
        settings = _SETTING.pack(S_ENABLE_PUSH, 0) + _SETTING.pack(S_INITIAL_WINDOW_SIZE, STREAM_RECEIVE_WINDOW)
        increment = CONNECTION_RECEIVE_WINDOW - DEFAULT_WINDOW
        self.out.append(PREFACE + frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, _U32.pack(increment)))

    def submit(self, headers: list[Header], body: bytes, token: Any) -> Stream:
        """Start a request now, or queue it while the peer's stream limit is reached. Not while going away."""
        stream = Stream(headers, body, token)
        if len(self.streams) < self.max_streams and not self.queue:
            self._start(stream)
        else:
            self.queue.append(stream)
        return stream

    def cancel(self, stream: Stream) -> None:
        """The caller gave up on ``stream`` (a deadline): drop it from the queue, or reset it (CANCEL)."""
        if stream.id == 0:
            with contextlib.suppress(ValueError):
                self.queue.remove(stream)
            return
        if self.streams.pop(stream.id, None) is not None and not self.closing:
            self.out.append(frame(RST_STREAM, 0, stream.id, _U32.pack(CANCEL)))
            self._stream_done()

    def receive(self, data: bytes) -> Sequence[Ended]:
        """Process received bytes (any split); returns `take_ended()`. A protocol error sets ``error`` and
        closes (GOAWAY with its code); nothing after it is processed."""
        if self.closing:
            return self.take_ended()
        buf = self._inbuf
        buf += data
        pos = 0
        end = len(buf)
        unpack = _FRAME_HEADER.unpack_from
        on_frame = self._on_frame
        try:
            while end - pos >= 9:
                hi, lo, ftype, flags, stream_id = unpack(buf, pos)
                length = (hi << 16) | lo
                if end - pos - 9 < length:
                    break
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                on_frame(ftype, flags, stream_id & 0x7FFFFFFF, payload)
                if self.closing:
                    break
        except ProtocolError as exc:
            self.error = exc
            self.close(exc.code, str(exc).encode())
        del buf[:pos]
        return self.take_ended()

    def retire(self) -> None:
        """Take no new requests; queued ones fail as unprocessed; close once the started ones are answered."""
        if self.going_away:
            return
        self.going_away = True
        self._fail_queue(StreamUnprocessed("connection retired"))
        if not self.streams:
            self.close()

    def close(self, code: int = NO_ERROR, debug: bytes = b"") -> None:
        """Say GOAWAY (once); the socket should close once that is written."""
        self.going_away = True
        if self.closing:
            return
        self.closing = True
        self.out.append(frame(GOAWAY, 0, 0, _GOAWAY.pack(self._last_peer_stream, code) + debug[:200]))

    def connection_lost(self, reason: str) -> Sequence[Ended]:
        """The socket is gone: started requests are lost (maybe processed), queued ones unprocessed."""
        self.going_away = self.closing = True
        streams, self.streams = self.streams, {}
        self._blocked.clear()
        lost = StreamLost(reason)
        ended = self.ended
        for stream in streams.values():
            ended.append((stream.token, lost))
        self._fail_queue(StreamUnprocessed(reason))
        self.out.clear()
        return self.take_ended()

    # -- writing ---------------------------------------------------------------------------------------

    def _start(self, stream: Stream) -> None:
        stream_id = self._next_id
        if stream_id > MAX_STREAM_ID:
            self.ended.append((stream.token, StreamUnprocessed("stream ids exhausted")))
            self.retire()
            return
        self._next_id += 2
        stream.id = stream_id
        stream.send_window = self._peer_initial_window
        self.streams[stream_id] = stream
        try:
            block = self._encoder.encode(stream.headers)
        except HPACKError as exc:  # a header value HPACK refuses: nothing went out, but the table may be off
            del self.streams[stream_id]
            self.ended.append((stream.token, H2TransportError(f"HPACK: {exc}")))
            self.retire()
            return
        stream.headers = []
        out = self.out
        flags = 0 if stream.body else END_STREAM
        limit = self.max_frame
        if len(block) <= limit:
            out.append(frame(HEADERS, flags | END_HEADERS, stream_id, block))
        else:
            out.append(frame(HEADERS, flags, stream_id, block[:limit]))
            for at in range(limit, len(block), limit):
                last = at + limit >= len(block)
                out.append(frame(CONTINUATION, END_HEADERS if last else 0, stream_id, block[at : at + limit]))
        if stream.body:
            self._send_body(stream)

    def _send_body(self, stream: Stream) -> bool:
        """Write as much of the body as the windows allow; False (and queued in _blocked) if not all."""
        body = stream.body
        total = len(body)
        out = self.out
        while stream.offset < total:
            n = min(total - stream.offset, self.send_window, stream.send_window, self.max_frame)
            if n <= 0:
                if stream not in self._blocked:
                    self._blocked.append(stream)
                return False
            start = stream.offset
            stream.offset = start + n
            self.send_window -= n
            stream.send_window -= n
            chunk = body if n == total else body[start : start + n]
            out.append(frame(DATA, END_STREAM if stream.offset == total else 0, stream.id, chunk))
        stream.body = b""
        return True

    def _unblock(self) -> None:
        blocked, self._blocked = self._blocked, deque()
        for stream in blocked:  # in order; each one still short of window queues itself again
            if stream.id in self.streams and stream.body:
                if self.send_window <= 0:
                    self._blocked.append(stream)
                else:
                    self._send_body(stream)

    def _start_queued(self) -> None:
        queue = self.queue
        abandoned = self.abandoned
        while queue and len(self.streams) < self.max_streams and not self.going_away:
            stream = queue.popleft()
            if not abandoned(stream.token):  # skip requests whose caller gave up (deadline)
                self._start(stream)

    def _stream_done(self) -> None:
        if self.queue:
            self._start_queued()
        if self.going_away and not self.streams:
            self.close()

    def _fail_queue(self, exc: H2TransportError) -> None:
        queue, self.queue = self.queue, deque()
        ended = self.ended
        for stream in queue:
            ended.append((stream.token, exc))

    # -- reading ---------------------------------------------------------------------------------------

    def _on_frame(self, ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._header_block is not None and ftype != CONTINUATION:
            raise ProtocolError(PROTOCOL_ERROR, "expected CONTINUATION")
        if ftype == HEADERS:
            if not stream_id:
                raise ProtocolError(PROTOCOL_ERROR, "HEADERS on stream 0")
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
                raise ProtocolError(PROTOCOL_ERROR, "unexpected CONTINUATION")
            block[2].extend(payload)
            if len(block[2]) > MAX_HEADER_BLOCK:
                raise ProtocolError(PROTOCOL_ERROR, "header block too large")
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
                self.out.append(frame(PING, ACK, 0, payload))
        elif ftype == RST_STREAM:
            self._on_reset(stream_id, payload)
        elif ftype == GOAWAY:
            self._on_goaway(payload)
        elif ftype == PUSH_PROMISE:
            raise ProtocolError(PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")
        # PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5).

    def _on_headers(self, stream_id: int, flags: int, block: bytes) -> None:
        try:
            fields = self._decoder.decode(block, raw=True)  # always decoded: the HPACK state depends on it
        except BaseException as exc:  # HPACKError, OversizedHeaderListError, and jh2's Rust panics
            # A malformed block can panic the Rust decoder: pyo3's PanicException is a BaseException.
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise
            raise ProtocolError(COMPRESSION_ERROR, f"HPACK: {exc!r}") from exc
        stream = self.streams.get(stream_id)
        if stream is None:
            return  # a stream we reset or never had
        self.answered += 1
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
                self.out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_unacked)))
                self._recv_unacked = 0
        stream = self.streams.get(stream_id)
        if stream is None:
            # RFC 9113 §5.1, §6.1: DATA on stream 0 or on one we never opened (idle) is a connection error;
            # on one we reset or that ended, it is late and ignored.
            if not stream_id or stream_id >= self._next_id or not stream_id & 1:
                raise ProtocolError(PROTOCOL_ERROR, f"DATA on stream {stream_id}, which was never opened")
            return
        self.answered += 1
        data = _unpad(flags, payload)
        if data:
            stream.received += data
        if flags & END_STREAM:
            self._end(stream)
        elif size:
            stream.recv_unacked += size
            if stream.recv_unacked >= STREAM_RECEIVE_WINDOW // 2:
                self.out.append(frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.recv_unacked)))
                stream.recv_unacked = 0

    def _end(self, stream: Stream, exc: H2TransportError | None = None) -> None:
        if self.streams.pop(stream.id, None) is None:
            return
        if exc is not None:
            self.ended.append((stream.token, exc))
            if not self.closing:  # we end it early: tell the peer
                self.out.append(frame(RST_STREAM, 0, stream.id, _U32.pack(CANCEL)))
        elif not stream.status:
            self.ended.append((stream.token, StreamLost("stream ended without an answer")))
        else:
            self.ended.append((stream.token, Response(stream.status, stream.resp_headers, bytes(stream.received))))
        self._stream_done()

    def _on_settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise ProtocolError(FRAME_SIZE_ERROR, "SETTINGS length")
        for at in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, at)
            if key == S_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
            elif key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == S_MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    raise ProtocolError(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.max_frame = value
            elif key == S_HEADER_TABLE_SIZE:
                self._encoder.header_table_size = min(value, 4096)
        self.out.append(frame(SETTINGS, ACK, 0))
        self.settings_received = True
        self._unblock()
        self._start_queued()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError(FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise ProtocolError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise ProtocolError(FLOW_CONTROL_ERROR, "connection window overflow")
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
        if self._blocked:
            self._unblock()

    def _on_reset(self, stream_id: int, payload: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or len(payload) != 4:
            return
        code = _U32.unpack(payload)[0]
        self.answered += 1
        del self.streams[stream_id]
        # RFC 9113 §8.7: REFUSED_STREAM guarantees the request was not processed.
        exc_type = StreamUnprocessed if code == REFUSED_STREAM else StreamLost
        self.ended.append((stream.token, exc_type(f"stream reset by the peer: error code {code}")))
        self._stream_done()

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise ProtocolError(FRAME_SIZE_ERROR, "GOAWAY length")
        last_stream_id, code = _GOAWAY.unpack_from(payload)
        last_stream_id &= 0x7FFFFFFF
        self.goaway = (last_stream_id, code, payload[8:208])
        self.going_away = True
        unprocessed = StreamUnprocessed(f"GOAWAY last_stream_id={last_stream_id}")
        ended = self.ended
        for stream_id in [s for s in self.streams if s > last_stream_id]:
            ended.append((self.streams.pop(stream_id).token, unprocessed))
        self._fail_queue(unprocessed)
        if not self.streams:  # nothing left to wait for; streams <= last_stream_id still get answers
            self.close()


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ProtocolError(PROTOCOL_ERROR, "bad padding")
    return payload[1 : len(payload) - payload[0]]
