"""CPU cost of the fake providers per request: ``python -m benchmarks.fakes --provider apns|fcm|webpush``.

Starts ``python -m pushstream.testing.fakes`` as a child process (benchmark mode, and record mode unless
``--modes`` says otherwise), drives one provider from this process with a small load generator, and reports
the child's CPU time (utime + stime from /proc/<pid>/stat) per request: the median of ``--runs`` runs.
The load generator's own cost does not count; it only has to keep the fake busy:
- APNs: HTTP/2 over TLS (ALPN h2), one connection, ``--concurrency`` streams in flight, ES256 JWT;
- FCM: an OAuth token from the fake's /token, then HTTP/2 with prior knowledge (h2c), one connection;
- Web Push: HTTP/1.1 keep-alive, ``--concurrency`` connections with one request each in flight (like
  aiohttp), VAPID + aes128gcm bodies that decrypt with the subscriptions' keys.
HPACK comes from jh2's Rust codec; frames are written by hand, all of one loop turn in one write.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import http_ece
import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jh2._hazmat import Decoder, Encoder

from pushstream.testing.fakes import DevSetup, FakesProcess, webpush_subscription
from pushstream.testing.fakes.credentials import b64url, b64url_decode, client_ssl_context, load_private_key

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
CLIENT_WINDOW = 1 << 30
TOKENS = 1000  # distinct device tokens / subscriptions cycled through


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream_id) + payload


@dataclass
class Tally:
    """Answers seen, by status."""

    by_status: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1

    @property
    def done(self) -> int:
        return sum(self.by_status.values())


# A request: (headers without :method/:scheme, body). :path and :authority are included.
RequestFactory = Callable[[int], tuple[list[tuple[bytes, bytes, bool]], bytes]]


class H2Load(asyncio.Protocol):
    """A lean HTTP/2 client that keeps ``concurrency`` POSTs in flight until ``total`` were answered."""

    def __init__(self, make: RequestFactory, scheme: bytes) -> None:
        self.make = make
        self.scheme = scheme
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.buffer = b""
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.next_stream = 1
        self.in_flight = 0
        self.sent = 0
        self.total = 0
        self.concurrency = 1
        self.peer_max_streams = 100
        self.peer_initial_window = 65535
        self.send_window = 65535
        self.stream_windows: dict[int, int] = {}
        self.blocked: list[tuple[int, bytes]] = []  # bodies waiting for flow-control window
        self.received = 0
        self.header_block: tuple[int, int, bytearray] | None = None
        self.statuses: dict[int, int] = {}  # :status of answers whose DATA is still to come
        self.tally = Tally()
        self.finished: asyncio.Future[None] | None = None
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    # -- driving ---------------------------------------------------------------------------------------

    async def run(self, total: int, concurrency: int) -> Tally:
        self.tally = Tally()
        self.total, self.sent, self.concurrency = total, 0, concurrency
        self.finished = asyncio.get_running_loop().create_future()
        self._top_up()
        self._flush()
        await self.finished
        return self.tally

    def _top_up(self) -> None:
        limit = min(self.concurrency, self.peer_max_streams)
        while self.in_flight < limit and self.sent < self.total:
            self._send(self.sent)
            self.sent += 1

    def _send(self, n: int) -> None:
        headers, body = self.make(n)
        stream_id = self.next_stream
        self.next_stream += 2
        block = self.encoder.encode([(b":method", b"POST", False), (b":scheme", self.scheme, False), *headers])
        self.out.append(frame(HEADERS, END_HEADERS, stream_id, block))
        self.in_flight += 1
        self.stream_windows[stream_id] = self.peer_initial_window
        self.blocked.append((stream_id, body))
        self._send_blocked()

    def _send_blocked(self) -> None:
        while self.blocked:
            stream_id, body = self.blocked[0]
            window = self.stream_windows.get(stream_id, 0)
            if len(body) > self.send_window or len(body) > window:
                return
            self.blocked.pop(0)
            self.send_window -= len(body)
            self.stream_windows[stream_id] = window - len(body)
            self.out.append(frame(DATA, END_STREAM, stream_id, body))

    def _flush_soon(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def _completed(self, stream_id: int, status: int) -> None:
        self.stream_windows.pop(stream_id, None)
        self.in_flight -= 1
        self.tally.add(status)
        if self.sent < self.total:
            self._top_up()
        elif self.in_flight == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are no subclasses
        settings = struct.pack(">HIHI", 0x2, 0, 0x4, CLIENT_WINDOW)
        self.transport.write(
            PREFACE + frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", CLIENT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.finished is not None and not self.finished.done():
            self.finished.set_exception(ConnectionError(f"connection lost: {exc!r}"))
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        offset, size = 0, len(buffer)
        while size - offset >= 9:
            length = int.from_bytes(buffer[offset : offset + 3], "big")
            end = offset + 9 + length
            if end > size:
                break
            kind, flags = buffer[offset + 3], buffer[offset + 4]
            stream_id = int.from_bytes(buffer[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            self._frame(kind, flags, stream_id, buffer[offset + 9 : end])
            offset = end
        self.buffer = buffer[offset:]
        self._flush_soon()

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY:
                payload = payload[5:]
            self.header_block = (stream_id, flags, bytearray(payload))
            if flags & END_HEADERS:
                self._headers_done()
        elif kind == CONTINUATION and self.header_block is not None:
            self.header_block[2].extend(payload)
            if flags & END_HEADERS:
                self._headers_done()
        elif kind == DATA:
            self.received += length if (length := len(payload)) else 0
            if self.received > CLIENT_WINDOW // 2:
                self.out.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.received)))
                self.received = 0
            if flags & END_STREAM:
                self._completed(stream_id, self.statuses.pop(stream_id, 0))
        elif kind == SETTINGS:
            if not flags & ACK:
                for i in range(0, len(payload) - 5, 6):
                    ident, value = struct.unpack(">HI", payload[i : i + 6])
                    if ident == 0x3:
                        self.peer_max_streams = value
                    elif ident == 0x4:
                        delta = value - self.peer_initial_window
                        self.peer_initial_window = value
                        for sid in self.stream_windows:
                            self.stream_windows[sid] += delta
                    elif ident == 0x1:
                        self.encoder.header_table_size = value
                self.out.append(frame(SETTINGS, ACK, 0))
                if not self.connected.done():
                    self.connected.set_result(None)
                self._send_blocked()
                if self.finished is not None and not self.finished.done():
                    self._top_up()
        elif kind == WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if stream_id == 0:
                self.send_window += increment
            elif stream_id in self.stream_windows:
                self.stream_windows[stream_id] += increment
            self._send_blocked()
        elif kind == PING and not flags & ACK:
            self.out.append(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            self.tally.errors.append(f"RST_STREAM {stream_id}")
            self.blocked = [entry for entry in self.blocked if entry[0] != stream_id]
            self._completed(stream_id, -1)
        elif kind == GOAWAY:
            self.tally.errors.append(f"GOAWAY {payload[8:]!r}")

    def _headers_done(self) -> None:
        assert self.header_block is not None
        stream_id, flags, block = self.header_block
        self.header_block = None
        status = 0
        for name, value, _ in self.decoder.decode(bytes(block), raw=True):
            if name == b":status":
                status = int(value)
        if flags & END_STREAM:
            self._completed(stream_id, status)
        else:
            self.statuses[stream_id] = status


class H1Conn(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection that POSTs requests one after another."""

    def __init__(self, load: H1Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are no subclasses
        self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self, exc)

    def send_next(self) -> None:
        request = self.load.next_request()
        if request is not None and self.transport is not None:
            self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.load.tally.add(int(head[0].split(" ", 2)[1]))
            self.load.answered()
            self.send_next()


class H1Load:
    """``concurrency`` HTTP/1.1 connections, each with one request in flight."""

    def __init__(self, make: Callable[[int], bytes]) -> None:
        self.make = make
        self.conns: list[H1Conn] = []
        self.tally = Tally()
        self.total = self.sent = 0
        self.finished: asyncio.Future[None] | None = None

    async def connect(self, host: str, port: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            _, conn = await loop.create_connection(lambda: H1Conn(self), host, port)
            self.conns.append(conn)

    def next_request(self) -> bytes | None:
        if self.sent >= self.total:
            return None
        self.sent += 1
        return self.make(self.sent - 1)

    def answered(self) -> None:
        if self.tally.done >= self.total and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    def lost(self, conn: H1Conn, exc: Exception | None) -> None:
        if self.finished is not None and not self.finished.done():
            self.finished.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    async def run(self, total: int, concurrency: int) -> Tally:
        self.tally, self.total, self.sent = Tally(), total, 0
        self.finished = asyncio.get_running_loop().create_future()
        for conn in self.conns[:concurrency]:
            conn.send_next()
        await self.finished
        return self.tally


# -- the three providers' requests ----------------------------------------------------------------------------


def apns_factory(setup: DevSetup) -> RequestFactory:
    token = jwt.encode(
        {"iss": setup.apns_team_id, "iat": int(time.time())},
        setup.apns_key_file.read_bytes(),
        algorithm="ES256",
        headers={"kid": setup.apns_key_id},
    )
    auth = f"bearer {token}".encode()
    topic = setup.apns_topic.encode()
    body = orjson.dumps({"aps": {"alert": {"title": "Benchmark", "body": "x" * 80}, "sound": "default"}})

    def make(n: int) -> tuple[list[tuple[bytes, bytes, bool]], bytes]:
        return [
            (b":path", b"/3/device/" + f"{n % TOKENS:064x}".encode(), True),
            (b":authority", b"localhost", False),
            (b"authorization", auth, True),  # never indexed, like h2-based senders do
            (b"apns-id", str(uuid.uuid4()).encode(), True),
            (b"apns-topic", topic, False),
            (b"apns-push-type", b"alert", False),
            (b"apns-priority", b"10", False),
            (b"apns-expiration", b"0", False),
            (b"content-length", str(len(body)).encode(), False),
        ], body

    return make


def fcm_factory(setup: DevSetup, port: int) -> RequestFactory:
    account = orjson.loads(setup.fcm_service_account_file.read_bytes())
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": account["client_email"],
            "scope": "https://www.googleapis.com/auth/firebase.messaging",
            "aud": "https://oauth2.googleapis.com/token",
            "iat": now,
            "exp": now + 3600,
        },
        account["private_key"],
        algorithm="RS256",
        headers={"kid": account["private_key_id"]},
    )
    answer = httpx.post(
        f"http://127.0.0.1:{port}/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )
    answer.raise_for_status()
    auth = f"Bearer {answer.json()['access_token']}".encode()
    path = f"/v1/projects/{account['project_id']}/messages:send".encode()
    authority = f"127.0.0.1:{port}".encode()

    def make(n: int) -> tuple[list[tuple[bytes, bytes, bool]], bytes]:
        body = orjson.dumps(
            {
                "message": {
                    "token": f"fcm-{n % TOKENS:09d}",
                    "notification": {"title": "Benchmark", "body": "x" * 80},
                    "data": {"campaign": "bench", "n": str(n)},
                    "android": {"priority": "high", "ttl": "3600s"},
                }
            }
        )
        return [
            (b":path", path, False),
            (b":authority", authority, False),
            (b"authorization", auth, True),
            (b"content-type", b"application/json", False),
            (b"content-length", str(len(body)).encode(), False),
        ], body

    return make


def webpush_factory(setup: DevSetup, port: int) -> Callable[[int], bytes]:
    origin = f"http://127.0.0.1:{port}"
    vapid_key = load_private_key(setup.vapid_private_key_file)
    assert isinstance(vapid_key, ec.EllipticCurvePrivateKey)
    public = vapid_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    token = jwt.encode(
        {"aud": origin, "exp": int(time.time()) + 12 * 3600, "sub": "mailto:bench@example.com"},
        vapid_key,
        algorithm="ES256",
    )
    auth = f"vapid t={token},k={b64url(public)}"
    payload = orjson.dumps({"title": "Benchmark", "body": "x" * 200})
    requests: list[bytes] = []
    for k in range(8):  # bodies really encrypted to each subscription, so record mode decrypts them
        sid = f"bench-{k}"
        keys = webpush_subscription(origin, setup.webpush_seed, sid)["keys"]
        ua_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(keys["p256dh"]))
        body = http_ece.encrypt(
            payload,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            dh=ua_public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
            auth_secret=b64url_decode(keys["auth"]),
            version="aes128gcm",
        )
        head = (
            f"POST /push/{sid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTTL: 3600\r\nUrgency: normal\r\n"
            f"Content-Encoding: aes128gcm\r\nContent-Type: application/octet-stream\r\nAuthorization: {auth}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return lambda n: requests[n % len(requests)]


# -- measuring ----------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(args: argparse.Namespace, setup: DevSetup, pid: int, port: int) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    runs: list[dict[str, Any]] = []
    load: H2Load | H1Load
    if args.provider == "webpush":
        load = H1Load(webpush_factory(setup, port))
        await load.connect("127.0.0.1", port, args.concurrency)
    else:
        if args.provider == "apns":
            make, scheme = apns_factory(setup), b"https"
            ssl_context = client_ssl_context(setup, ("h2",))
            _, load = await loop.create_connection(
                lambda: H2Load(make, scheme), "127.0.0.1", port, ssl=ssl_context, server_hostname="localhost"
            )
        else:
            make, scheme = fcm_factory(setup, port), b"http"
            _, load = await loop.create_connection(lambda: H2Load(make, scheme), "127.0.0.1", port)
        await load.connected
    await load.run(min(2000, args.requests), args.concurrency)  # warm-up: connection, auth caches, stream limit
    for _ in range(args.runs):
        await asyncio.sleep(0.2)
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        tally = await load.run(args.requests, args.concurrency)
        wall, cpu = time.perf_counter() - wall0, cpu_seconds(pid) - cpu0
        runs.append(
            {
                "us_per_request": cpu / args.requests * 1e6,
                "requests_per_s": args.requests / wall,
                "by_status": tally.by_status,
                "errors": tally.errors[:3],
            }
        )
    return runs


def setup_from_json(data: dict[str, Any]) -> DevSetup:
    """The DevSetup the running fakes use, from their control API's /setup."""
    values: dict[str, Any] = {}
    for name, kind in DevSetup.__annotations__.items():
        value = data[name]
        values[name] = Path(value) if kind == "Path" else bytes.fromhex(value) if kind == "bytes" else value
    return DevSetup(**values)


def measure(args: argparse.Namespace, benchmark: bool, workdir: Path) -> dict[str, Any]:
    process = FakesProcess(workdir / ("bench" if benchmark else "record"), benchmark=benchmark)
    client = process.start()
    try:
        endpoints = process.endpoints
        assert endpoints is not None
        port = getattr(endpoints, f"{args.provider}_port")
        setup = setup_from_json(client.setup())
        before = client.stats()[args.provider]["requests"]
        runs = asyncio.run(drive(args, setup, endpoints.pid, port))
        counted = client.stats()[args.provider]["requests"] - before
    finally:
        process.stop()
    median = statistics.median(run["us_per_request"] for run in runs)
    return {"mode": "benchmark" if benchmark else "record", "median_us": median, "runs": runs, "counted": counted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fakes", description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=("apns", "fcm", "webpush"), required=True)
    parser.add_argument("--requests", type=int, default=20000, help="requests per run (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=500, help="streams / connections in flight")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode; the median is reported")
    parser.add_argument("--modes", default="benchmark,record", help="comma-separated: benchmark, record")
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fakes-") as tmp:
        for mode in args.modes.split(","):
            results.append(measure(args, mode.strip() == "benchmark", Path(tmp)))
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    for result in results:
        runs = " / ".join(f"{run['us_per_request']:.1f}" for run in result["runs"])
        rates = statistics.median(run["requests_per_s"] for run in result["runs"])
        statuses = {k: v for run in result["runs"] for k, v in run["by_status"].items()}
        print(
            f"{args.provider:8} {result['mode']:9} {result['median_us']:7.1f} µs CPU/request (runs {runs}), "
            f"{rates:,.0f} req/s, answers {statuses} (last run), fake counted {result['counted']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
