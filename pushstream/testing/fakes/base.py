"""What the three fake providers share: recording, scripted answers, latency, counters, lifecycle."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

import orjson

from pushstream.testing.fakes.credentials import DevSetup, server_ssl_context
from pushstream.testing.fakes.httpserver import Answer, HTTPServer, IncomingRequest
from pushstream.testing.fakes.lean import lean_protocols

V = TypeVar("V")


@dataclass(slots=True)
class RecordedRequest:
    """One request a fake received and how it answered."""

    provider: str
    at: float  # epoch seconds at arrival
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    reason: str | None  # APNs reason / FCM errorCode / short Web Push cause; None on success
    key: str | None  # device token, FCM target, or Web Push subscription id
    http_version: str
    connection_id: int
    json: Any = None  # parsed body (APNs, FCM) or parsed plaintext (Web Push), when it is JSON
    plaintext: bytes | None = None  # decrypted Web Push payload
    peer_port: int | None = None  # the client's TCP port

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form: bytes as text when they are UTF-8, always also as base64."""
        return {
            "provider": self.provider,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": _text_or_none(self.body),
            "body_b64": base64.b64encode(self.body).decode("ascii"),
            "status": self.status,
            "reason": self.reason,
            "key": self.key,
            "http_version": self.http_version,
            "connection_id": self.connection_id,
            "peer_port": self.peer_port,
            "json": self.json,
            "plaintext": None if self.plaintext is None else _text_or_none(self.plaintext),
            "plaintext_b64": None if self.plaintext is None else base64.b64encode(self.plaintext).decode("ascii"),
        }


@dataclass(slots=True)
class FakeAnswer:
    """A handler's decision about one request, plus what is worth recording about it."""

    answer: Answer
    reason: str | None = None
    key: str | None = None
    json: Any = None
    plaintext: bytes | None = None


@dataclass(slots=True)
class Fault:
    """An answer forced by a script, a fraction rule or an unregistered token."""

    status: int
    reason: str | None
    retry_after: int | None = None
    unregistered_at_ms: int | None = None  # set for tokens marked unregistered


@dataclass(slots=True)
class _Script:
    status: int
    reason: str | None
    retry_after: int | None
    times: int | None  # None: forever


@dataclass(slots=True)
class _FractionRule:
    fraction: float
    status: int
    reason: str | None
    retry_after: int | None
    rng: random.Random


class VerdictCache(Generic[V]):
    """Verdicts about auth tokens keyed by the token string: a token is checked once, not per request."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: dict[str, V] = {}
        self._max_entries = max_entries

    def get(self, token: str) -> V | None:
        return self._entries.get(token)

    def put(self, token: str, verdict: V) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # crude, but tokens are long-lived so this is rare
        self._entries[token] = verdict

    def clear(self) -> None:
        self._entries.clear()


def json_answer(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Answer:
    """An Answer with a JSON body."""
    return Answer(status, [("content-type", "application/json"), *headers], orjson.dumps(payload))


def retry_after_header(fault: Fault) -> list[tuple[str, str]]:
    """The Retry-After header a fault asks for, if any."""
    return [] if fault.retry_after is None else [("retry-after", str(fault.retry_after))]


def parse_json(data: bytes) -> Any:
    """Parsed JSON, or None when the bytes are not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


class FakeProvider:
    """Base of FakeAPNs, FakeFCM and FakeWebPush.

    Subclasses implement ``handle``; this class adds latency, applies scripted faults through ``fault_for``,
    records requests (or only counts them in benchmark mode) and owns the HTTP server.
    """

    name: ClassVar[str] = "fake"
    gone_status: ClassVar[int] = 410  # what an unregistered token gets
    tls_alpn: ClassVar[tuple[str, ...] | None] = None  # serve TLS offering these protocols; None: plain
    serves_http1: ClassVar[bool] = True
    advertised_max_streams: ClassVar[int] = 100  # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS at connect

    def __init__(self, setup: DevSetup, *, host: str = "127.0.0.1", port: int = 0, benchmark: bool = False) -> None:
        self.benchmark = benchmark
        self.latency = 0.0  # seconds added before every answer, per request (other streams keep flowing)
        self.records: list[RecordedRequest] = []
        self.status_counts: Counter[int] = Counter()
        self.server = HTTPServer(
            self._serve,
            host=host,
            port=port,
            ssl_context=None if self.tls_alpn is None else server_ssl_context(setup, self.tls_alpn),
            http1=self.serves_http1,
            advertised_max_streams=self.advertised_max_streams,
            validate_headers=not benchmark,
            lean=lean_protocols(self._answer_now) if benchmark else None,
        )
        self._scripts: dict[str, _Script] = {}
        self._fraction: _FractionRule | None = None
        self._unregistered: dict[str, int] = {}
        self.configure(setup)

    def configure(self, setup: DevSetup) -> None:
        """Take what this provider needs (keys, ids) from the dev setup."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind (port 0 = ephemeral) and serve."""
        await self.server.start()

    async def stop(self) -> None:
        """Close the listener and all connections."""
        await self.server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    @property
    def url(self) -> str:
        """Base URL (origin) clients use to reach this fake."""
        scheme = "https" if self.server.ssl_context is not None else "http"
        return f"{scheme}://{self.server.host}:{self.port}"

    # -- steering ----------------------------------------------------------------------------------

    @property
    def goaway_after(self) -> int | None:
        """Send GOAWAY on each HTTP/2 connection after it carried this many requests (None = never)."""
        return self.server.goaway_after

    @goaway_after.setter
    def goaway_after(self, value: int | None) -> None:
        self.server.goaway_after = value

    def script(
        self,
        token: str,
        status: int,
        reason: str | None = None,
        retry_after: int | None = None,
        times: int | None = None,
    ) -> None:
        """Answer requests for ``token`` with ``status``/``reason`` (``times`` times, or until reset)."""
        self._scripts[token] = _Script(status, reason, retry_after, times)

    def script_fraction(
        self,
        fraction: float,
        status: int,
        reason: str | None = None,
        *,
        retry_after: int | None = None,
        seed: int = 0,
    ) -> None:
        """Answer about ``fraction`` of accepted requests with ``status`` (same seed, same picks)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must lie in [0, 1]")
        self._fraction = _FractionRule(fraction, status, reason, retry_after, random.Random(seed))

    def unregister(self, token: str, at_ms: int | None = None) -> None:
        """Treat ``token`` as no longer registered (the provider's 'gone' answer from now on)."""
        self._unregistered[token] = int(time.time() * 1000) if at_ms is None else at_ms

    def reset(self) -> None:
        """Forget records, counters, scripts, unregistered tokens, latency and GOAWAY settings."""
        self.records.clear()
        self.status_counts.clear()
        self._scripts.clear()
        self._fraction = None
        self._unregistered.clear()
        self.latency = 0.0
        self.server.goaway_after = None

    def fault_for(self, token: str | None) -> Fault | None:
        """The forced answer for a request that passed validation, if any."""
        if token is not None:
            at_ms = self._unregistered.get(token)
            if at_ms is not None:
                return Fault(self.gone_status, None, unregistered_at_ms=at_ms)
            script = self._scripts.get(token)
            if script is not None:
                if script.times is not None:
                    script.times -= 1
                    if script.times <= 0:
                        del self._scripts[token]
                return Fault(script.status, script.reason, script.retry_after)
        rule = self._fraction
        if rule is not None and rule.rng.random() < rule.fraction:
            return Fault(rule.status, rule.reason, rule.retry_after)
        return None

    # -- observation -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: requests, answers per status, connections, GOAWAYs, peak concurrent streams."""
        server = self.server.stats
        return {
            "requests": sum(self.status_counts.values()),
            "by_status": {str(status): count for status, count in sorted(self.status_counts.items())},
            "connections": server.connections,
            "goaways": server.goaways,
            "max_concurrent_streams": server.max_concurrent_streams,
        }

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Poll until at least ``count`` requests were recorded; raise TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {len(self.records)} of {count} requests after {timeout}s")
            await asyncio.sleep(0.005)
        return list(self.records)

    # -- request path --------------------------------------------------------------------------------

    def handle(self, request: IncomingRequest) -> FakeAnswer:
        """Decide the answer to one request (provider-specific)."""
        raise NotImplementedError

    def _answer_now(self, request: IncomingRequest) -> tuple[Answer, float]:
        """Benchmark mode's request path (lean.py): decide and count at once; the delay is the latency."""
        answer = self.handle(request).answer
        self.status_counts[answer.status] += 1
        return answer, self.latency

    async def _serve(self, request: IncomingRequest) -> Answer:
        arrived = time.time()
        verdict = self.handle(request)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        status = verdict.answer.status
        self.status_counts[status] += 1
        if not self.benchmark:
            self.records.append(
                RecordedRequest(
                    provider=self.name,
                    at=arrived,
                    method=request.method,
                    path=request.path,
                    headers=dict(request.headers),
                    body=request.body,
                    status=status,
                    reason=verdict.reason,
                    key=verdict.key,
                    http_version=request.http_version,
                    connection_id=request.connection.id,
                    peer_port=request.connection.peer_port,
                    json=verdict.json,
                    plaintext=verdict.plaintext,
                )
            )
        return verdict.answer


def _text_or_none(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


__all__ = [
    "FakeAnswer",
    "FakeProvider",
    "Fault",
    "RecordedRequest",
    "VerdictCache",
    "json_answer",
    "parse_json",
    "retry_after_header",
]
