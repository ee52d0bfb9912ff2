"""A lean HTTP/1.1 client for Web Push POSTs: keep-alive connections per origin on plain asyncio.

Why not aiohttp: a push is one small POST whose answer is a status, a Retry-After and a short body, and
aiohttp spends 2-2.5x this client's CPU per request on generic machinery (multidicts, URL objects, tracing,
payload writers; benchmarks/webpush.py has both). Here one request is one ``transport.write`` of a
preformatted header block plus the body, and the answer is parsed from the bytes as they arrive.

What it does: HTTP/1.1 over TCP or TLS (``ssl``), one request at a time per connection, idle connections
reused per origin (LIFO) until the server closes them or they sit idle for ``IDLE_SECONDS``; answers with
``Content-Length``, ``Transfer-Encoding: chunked``, or neither (read until close); ``Connection: close``
honoured; 1xx interim answers skipped. At most ``max_connections`` connections exist at once (idle ones are
closed to make room). What it does not: redirects, proxies, compression, pipelining, request bodies that are
not bytes. A request that is cancelled (our deadline) closes its connection, whose state is then unknown.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from collections import deque
from typing import NamedTuple, cast

IDLE_SECONDS = 30.0  # below the usual server keep-alive timeouts, so we rarely reuse a connection being closed
_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024  # answers are small; a bigger one is cut (only its start is ever looked at)


class HttpError(Exception):
    """Base of this client's errors."""


class ConnectError(HttpError):
    """The connection could not be made (DNS, refused, TLS handshake, unreachable)."""


class ConnectionLost(HttpError):
    """The connection broke or closed before the whole answer arrived."""


class ProtocolError(HttpError):
    """The server's answer is not HTTP/1.1 as understood here."""


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` may be called again once the previous answer is complete."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Response] | None = None
        self._buffer = bytearray()
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._head_done = False
        self._length: int | None = None  # body bytes still expected; None = until close
        self._chunked = False
        self._chunk_state = "size"  # size line, "data", the "crlf" after data, "trailer" lines
        self._chunk_left = 0
        self._body = bytearray()
        self._keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            if self._head_done and self._length is None and not self._chunked:
                waiter.set_result(Response(self._status, self._headers, bytes(self._body)))  # read-until-close
            else:
                waiter.set_exception(ConnectionLost(str(exc) if exc else "server closed the connection"))

    def eof_received(self) -> bool | None:
        return False  # close our side too: connection_lost follows

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is out of step, drop it
            self.close()
            return
        self._buffer += data
        try:
            self._parse()
        except ProtocolError as exc:
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            self.close()

    # requests
    def request(self, head: bytes, body: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None and self._waiter is None
        self._reset()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head + body if len(body) < 16384 else head)
        if len(body) >= 16384:
            self.transport.write(body)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        buf = self._buffer
        while not self._head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ProtocolError("answer head too large")
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            lines = head.split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ProtocolError(f"bad status line {lines[0][:80]!r}")
            status = int(parts[1])
            if 100 <= status < 200:  # interim answer (100 Continue, 103 Early Hints): the real one follows
                continue
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ProtocolError("bad header line")
                headers[name.strip().lower()] = value.strip()
            self._status, self._headers, self._head_done = status, headers, True
            connection = headers.get("connection", "").lower()
            self._keep_alive = "close" not in connection and (parts[0] == "HTTP/1.1" or "keep-alive" in connection)
            if status in (204, 304):
                self._length = 0
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                self._chunked = True
            elif "content-length" in headers:
                try:
                    self._length = int(headers["content-length"])
                except ValueError:
                    raise ProtocolError("bad Content-Length") from None
            else:
                self._length = None
                self._keep_alive = False
        if self._chunked:
            self._parse_chunks()
        elif self._length is None:
            self._take(len(buf))
        else:
            take = min(self._length, len(buf))
            self._take(take)
            self._length -= take
            if self._length == 0:
                self._finish(leftover=bool(buf))

    def _take(self, count: int) -> None:
        room = _MAX_BODY - len(self._body)
        if room > 0:
            self._body += self._buffer[: min(count, room)]
        del self._buffer[:count]

    def _parse_chunks(self) -> None:
        buf = self._buffer
        while True:
            if self._chunk_state == "data":
                take = min(self._chunk_left, len(buf))
                self._take(take)
                self._chunk_left -= take
                if self._chunk_left:
                    return
                self._chunk_state = "crlf"
            if self._chunk_state == "crlf":
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                del buf[:2]
                self._chunk_state = "size"
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ProtocolError("chunk line too long")
                return
            line = bytes(buf[:end])
            del buf[: end + 2]
            if self._chunk_state == "trailer":
                if not line:  # the empty line after the trailers: the answer is complete
                    self._chunked = False
                    self._finish(leftover=bool(buf))
                    return
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError("bad chunk size") from None
            if size == 0:
                self._chunk_state = "trailer"
            else:
                self._chunk_state, self._chunk_left = "data", size

    def _finish(self, *, leftover: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if leftover or not self._keep_alive:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._headers, bytes(self._body)))


class HttpClient:
    """Keep-alive HTTP/1.1 connections per origin, at most ``max_connections`` in all."""

    def __init__(self, *, max_connections: int, ssl: ssl_module.SSLContext | None = None,
                 idle_seconds: float = IDLE_SECONDS) -> None:
        """``ssl`` verifies https origins (default: the system's trust store)."""
        self._ssl = ssl if ssl is not None else ssl_module.create_default_context()
        self._idle_seconds = idle_seconds
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self.connections_made = 0

    async def post(self, scheme: str, host: str, port: int, head: bytes, body: bytes) -> Response:
        """Send one request (``head``: the request line and headers, ending in an empty line) and its body."""
        origin = _Origin(scheme, host, port)
        async with self._slots:
            connection = self._reuse(origin)
            if connection is None:
                connection = await self._connect(origin)
            try:
                response = await connection.request(head, body)
            except BaseException:
                connection.close()  # cancelled or broken mid-answer: its state is unknown
                self._open.discard(connection)
                raise
            if connection.closed:
                self._open.discard(connection)
            else:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(origin, deque()).append(connection)
            return response

    def _reuse(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be closing
            transport = connection.transport
            if connection.closed or transport is None or transport.is_closing():
                self._open.discard(connection)
            elif now - connection.idle_since > self._idle_seconds:
                connection.close()
                self._open.discard(connection)
            else:
                return connection
        return None

    async def _connect(self, origin: _Origin) -> _Connection:
        # A free slot may still be held by an idle connection of another origin: close one to make room.
        if len(self._open) >= self._max_connections:
            self._close_one_idle()
        loop = asyncio.get_running_loop()
        tls = self._ssl if origin.scheme == "https" else None
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(origin), origin.host, origin.port, ssl=tls,
                server_hostname=origin.host if tls is not None else None,
            )
        except (OSError, ssl_module.SSLError, ssl_module.CertificateError) as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}") from exc
        self._open.add(connection)
        self.connections_made += 1
        return connection

    def _close_one_idle(self) -> None:
        for idle in self._idle.values():
            while idle:
                connection = idle.popleft()
                connection.close()
                self._open.discard(connection)
                return

    async def close(self) -> None:
        """Close every connection."""
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks
