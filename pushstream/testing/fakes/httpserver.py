"""The one small HTTP server core under every fake: HTTP/2 (raw ``h2``) and HTTP/1.1 (``h11``), TLS optional.

Why not an ASGI server: aioapns needs exact frame shapes (a 200 is HEADERS+END_STREAM with no DATA frame,
an error body is one non-empty DATA frame), control over SETTINGS mid-connection and GOAWAY on demand.

Protocol choice per connection: ALPN when the client offered it, otherwise sniff the first bytes for the
HTTP/2 connection preface ("prior knowledge"; aioapns over TLS and httpx ``http1=False`` on http:// do this).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11
from h2.settings import SettingCodes

log = logging.getLogger(__name__)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_READ_SIZE = 65536
_MAX_HEADER_LIST_SIZE = 65536
# The stream limit actually enforced, whatever is advertised: a client may open streams before it has
# read our SETTINGS (aioapns starts with 1000 free channels), and h2 would kill the whole connection.
# Obedience is observable instead, through ServerStats.max_concurrent_streams.
_ENFORCED_STREAM_LIMIT = 1000


@dataclass(slots=True)
class Answer:
    """A response: status, headers (lower-case names) and body. An empty body sends no DATA frame."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class Connection:
    """What a request handler may know about, and do to, the connection its request came on."""

    def __init__(self, connection_id: int, peer_port: int | None = None) -> None:
        self.id = connection_id
        # The client's port: tells which process sent a request, e.g. one written just before it was killed.
        self.peer_port = peer_port

    def raise_stream_limit(self, value: int) -> None:
        """Advertise a higher MAX_CONCURRENT_STREAMS (HTTP/2 only; once per connection)."""


@dataclass(slots=True)
class IncomingRequest:
    """A complete request as the handlers see it, independent of the HTTP version."""

    method: str
    path: str
    headers: list[tuple[str, str]]  # lower-case names, pseudo-headers left out
    body: bytes
    http_version: str  # "2" or "1.1"
    connection: Connection

    def header(self, name: str) -> str | None:
        """First value of a header (name in lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


Handler = Callable[[IncomingRequest], Awaitable[Answer]]
# Makes the protocol of one accepted connection in benchmark mode, from the server and a connection id.
LeanProtocols = Callable[["HTTPServer", int], asyncio.BaseProtocol]


@dataclass(slots=True)
class ServerStats:
    """Connection-level counters."""

    connections: int = 0
    goaways: int = 0
    max_concurrent_streams: int = 0  # most request streams open at once on one connection


class HTTPServer:
    """Serves ``handler`` on host:port; port 0 picks a free port, read ``.port`` after ``start()``."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        http1: bool = True,
        http2: bool = True,
        advertised_max_streams: int = 100,
        validate_headers: bool = True,
        lean: LeanProtocols | None = None,
    ) -> None:
        self.handler = handler
        # Benchmark mode: serve through the protocols ``lean`` makes (`lean.lean_protocols`), each answering
        # synchronously per request.
        self.lean = lean
        self.lean_connections: set[asyncio.Transport] = set()
        self.validate_headers = validate_headers  # h2's per-header checks cost ~10% CPU; benchmarks skip them
        self.host = host
        self.requested_port = port
        self.ssl_context = ssl_context
        self.http1 = http1
        self.http2 = http2
        self.advertised_max_streams = advertised_max_streams
        self.goaway_after: int | None = None  # per connection: GOAWAY once this many requests were taken
        self.goaway_reason = "Shutdown"
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)

    @property
    def port(self) -> int:
        """The bound port (valid after ``start()``)."""
        if self._server is None:
            raise RuntimeError("server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self.lean is not None:
            lean = self.lean
            self._server = await asyncio.get_running_loop().create_server(
                lambda: lean(self, next(self._ids)), self.host, self.requested_port, ssl=self.ssl_context
            )
            return
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.requested_port, ssl=self.ssl_context
        )

    async def stop(self) -> None:
        """Stop accepting, drop open connections and wait until they are gone."""
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._connection_tasks)
        for task in tasks:
            task.cancel()
        for transport in list(self.lean_connections):
            transport.abort()
        self.lean_connections.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def answer(self, request: IncomingRequest) -> Answer:
        """Run the handler; a bug in a fake answers 500 instead of leaving the client waiting."""
        try:
            return await self.handler(request)
        except Exception:
            log.exception("fake handler failed for %s %s", request.method, request.path)
            return Answer(500, [("content-type", "application/json")], b'{"reason": "InternalServerError"}')

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback that owns its task: asyncio 3.11 logs spurious errors when a coroutine callback
        # it wrapped itself is cancelled, which is how stop() ends connections.
        task = asyncio.create_task(self._serve_connection(reader, writer))
        self._connection_tasks.add(task)
        task.add_done_callback(self._connection_tasks.discard)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        session: _Session | None = None
        try:
            protocol, head = await self._select_protocol(reader, writer)
            if protocol == "2" and self.http2:
                session = _H2Session(self, next(self._ids), reader, writer)
            elif protocol == "1.1" and self.http1:
                session = _H1Session(self, next(self._ids), reader, writer)
            if session is not None:
                await session.run(head)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the peer went away; nothing to answer
        finally:
            if session is not None:
                await session.cancel_pending()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _select_protocol(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, bytes]:
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2":
            return "2", b""
        if alpn == "http/1.1":
            return "1.1", b""
        head = b""
        while len(head) < len(H2_PREFACE) and H2_PREFACE.startswith(head):
            chunk = await reader.read(_READ_SIZE)
            if not chunk:
                raise ConnectionResetError
            head += chunk
        return ("2" if head.startswith(H2_PREFACE) else "1.1"), head


class _Session(Connection):
    """One accepted connection, served in one protocol."""

    def __init__(
        self,
        server: HTTPServer,
        connection_id: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        peer = writer.get_extra_info("peername")
        super().__init__(connection_id, peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None)
        self._server = server
        self._reader = reader
        self._writer = writer
        self._prepare()

    def _prepare(self) -> None:
        """Per-protocol connection state."""

    async def run(self, head: bytes) -> None:
        """Serve requests until the peer or the server is done; ``head`` holds bytes already read."""
        raise NotImplementedError

    async def cancel_pending(self) -> None:
        """Stop work still running for this connection (HTTP/1.1 answers inline: nothing to stop)."""


class _H2Session(_Session):
    def _prepare(self) -> None:
        server = self._server
        strict = server.validate_headers
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding="utf-8",
            validate_inbound_headers=strict,
            normalize_inbound_headers=strict,
            validate_outbound_headers=strict,
            normalize_outbound_headers=strict,
        )
        self._h2 = h2.connection.H2Connection(config)
        self._h2.local_settings = self._settings(server.advertised_max_streams)
        self._h2.initiate_connection()
        # Advertised above, enforced leniently from here on (see _ENFORCED_STREAM_LIMIT).
        self._h2.local_settings = self._settings(max(server.advertised_max_streams, _ENFORCED_STREAM_LIMIT))
        self._partial: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        self._open: set[int] = set()  # received, not yet answered
        self._tasks: set[asyncio.Task[None]] = set()
        self._taken = 0
        self._draining = False
        self._last_stream_id = 0
        self._closed = False
        self._limit_raised = False
        self._pending_limit: int | None = None
        self._flush_scheduled = False

    @staticmethod
    def _settings(max_streams: int) -> h2.settings.Settings:
        return h2.settings.Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: _MAX_HEADER_LIST_SIZE,
            },
        )

    def raise_stream_limit(self, value: int) -> None:
        # Sent right after the answer to the request that earned it, not before: aioapns 4.0 resizes its
        # channel semaphore wrongly when the raise arrives while its only channel is taken (it ends up
        # with 2 channels instead of `value`); after the answer the channel is free and the resize works.
        if not self._limit_raised:
            self._limit_raised = True
            self._pending_limit = value

    async def run(self, head: bytes) -> None:
        self._flush()
        data = head or await self._reader.read(_READ_SIZE)
        while data and not self._closed:
            try:
                events = self._h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                self._flush()  # h2 queued a GOAWAY explaining the error
                return
            for event in events:
                self._on_event(event)
            self._flush()
            self._maybe_goaway()
            if self._closed:
                return
            await self._writer.drain()
            data = await self._reader.read(_READ_SIZE)

    async def cancel_pending(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            stream_id = event.stream_id
            if self._draining and stream_id > self._last_stream_id:
                return  # arrived after the GOAWAY cut-off: not processed, the client retries it elsewhere
            self._partial[stream_id] = ([(k, v) for k, v in event.headers or ()], bytearray())  # type: ignore[misc]
            self._open.add(stream_id)
            stats = self._server.stats
            stats.max_concurrent_streams = max(stats.max_concurrent_streams, len(self._open))
        elif isinstance(event, h2.events.DataReceived):
            entry = self._partial.get(event.stream_id)  # type: ignore[arg-type]
            if entry is not None and event.data:
                entry[1].extend(event.data)
            # Flow control: give the window back at once, bodies are buffered here anyway.
            self._h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)  # type: ignore[arg-type]
        elif isinstance(event, h2.events.StreamEnded):
            entry = self._partial.pop(event.stream_id, None)  # type: ignore[arg-type]
            if entry is not None:
                self._dispatch(event.stream_id, *entry)  # type: ignore[arg-type]
        elif isinstance(event, h2.events.StreamReset):
            self._partial.pop(event.stream_id, None)  # type: ignore[arg-type]
            self._open.discard(event.stream_id)  # type: ignore[arg-type]
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._closed = True

    def _dispatch(self, stream_id: int, raw_headers: list[tuple[str, str]], body: bytearray) -> None:
        method = path = ""
        headers: list[tuple[str, str]] = []
        for name, value in raw_headers:
            if name == ":method":
                method = value
            elif name == ":path":
                path = value
            elif not name.startswith(":"):
                headers.append((name, value))
        request = IncomingRequest(method, path, headers, bytes(body), "2", self)
        self._taken += 1
        limit = self._server.goaway_after
        if limit is not None and self._taken >= limit and not self._draining:
            self._draining = True
            # Everything already seen (even half-received) is processed; later streams are not.
            self._last_stream_id = max([stream_id, *self._partial])
        task = asyncio.create_task(self._answer(stream_id, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, stream_id: int, request: IncomingRequest) -> None:
        answer = await self._server.answer(request)
        self._respond(stream_id, answer)
        self._open.discard(stream_id)
        self._maybe_goaway()

    def _respond(self, stream_id: int, answer: Answer) -> None:
        # Writing after GOAWAY (or to a closed transport) makes h2 raise; a fake must never do it.
        if self._closed or self._writer.is_closing():
            return
        headers = [(":status", str(answer.status)), *answer.headers]
        try:
            if answer.body:
                self._h2.send_headers(stream_id, headers)
                # One DATA frame: fake bodies are far below the 16 KiB frame and 64 KiB window sizes.
                self._h2.send_data(stream_id, answer.body, end_stream=True)
            else:
                self._h2.send_headers(stream_id, headers, end_stream=True)
        except h2.exceptions.ProtocolError:
            return  # the client reset the stream, or said GOAWAY, while we were answering
        if self._pending_limit is not None:
            self._h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self._pending_limit})
            self._pending_limit = None
        self._flush_soon()

    def _maybe_goaway(self) -> None:
        if not self._draining or self._open or self._closed:
            return
        reason = f'{{"reason": "{self._server.goaway_reason}"}}'.encode()
        self._h2.close_connection(last_stream_id=self._last_stream_id, additional_data=reason)
        self._flush()
        self._closed = True
        self._server.stats.goaways += 1
        self._writer.close()  # buffered frames are still written before the socket closes

    def _flush_soon(self) -> None:
        # Answers finishing in the same loop turn share one socket write: a syscall per answer is what
        # limits throughput otherwise.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)


class _H1Session(_Session):
    async def run(self, head: bytes) -> None:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(head)
        method = path = ""
        headers: list[tuple[str, str]] = []
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                with contextlib.suppress(h11.LocalProtocolError):
                    self._send(conn, Answer(400, [("connection", "close")]))
                return
            if event is h11.NEED_DATA:
                conn.receive_data(await self._reader.read(_READ_SIZE))
            elif isinstance(event, h11.Request):
                method, path = event.method.decode("ascii"), event.target.decode("latin-1")
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
                body = bytearray()
                if conn.they_are_waiting_for_100_continue:
                    self._writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
            elif isinstance(event, h11.Data):
                body.extend(event.data)
            elif isinstance(event, h11.EndOfMessage):
                answer = await self._server.answer(IncomingRequest(method, path, headers, bytes(body), "1.1", self))
                self._send(conn, answer)
                await self._writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            else:  # ConnectionClosed or PAUSED: the peer is done with us
                return

    def _send(self, conn: h11.Connection, answer: Answer) -> None:
        headers = [*answer.headers, ("content-length", str(len(answer.body)))]
        out = conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
        if answer.body:
            out += conn.send(h11.Data(data=answer.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        self._writer.write(out)
