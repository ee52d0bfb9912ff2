"""The skeleton every provider client shares, once: `BatchSender`, and `PooledH2Sender` for the HTTP/2 ones.

A client is a `BatchSender` that supplies what is its own: how it opens and closes (credentials, connections),
how one batch's items become requests (`_preparer`, or a verdict when a local check decides), which key makes
two requests the same send (`_send_key`), how one request is tried (`_attempt`) and its table's verdict for
no answer (`_no_answer`). The base owns the rest: the per-send deadline, the in-flight limit, the counters,
the "start() was not called" guard, the batch template (one verdict per item, in item order) and the log
lines that name an address only by its fingerprint.

Nothing here adds work per request: the template makes the same calls the three clients made by hand.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

from pushstream.models.internal import DeliveryBatch
from pushstream.providers.batching import SendDeadlines, SendSlots, send_each
from pushstream.providers.h2transport import H2Pool
from pushstream.providers.outcome import Action, SendCounters, Verdict
from pushstream.rules.keys import token_fingerprint

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")


class BatchSender(Generic[RequestT]):
    """One provider client: `start`, `send_batch` (one verdict per item, never raising for an item), `close`.

    ``deadline`` bounds each item's send, resends included (default ``settings.timeout_seconds``);
    ``max_in_flight`` bounds concurrent sends.
    """

    # Set by each client class.
    platform: str
    provider: str  # how log lines name the provider: "APNs", "FCM", "Web Push"
    address: str  # what a request goes to, in log lines: "token", "endpoint"

    def __init__(self, settings: Any, *, deadline: float | None, max_in_flight: int) -> None:
        self.settings = settings
        self.deadline: float = deadline if deadline is not None else settings.timeout_seconds
        self.counters = SendCounters()
        self._max_in_flight = max_in_flight
        self._in_flight: SendSlots | None = None
        self._deadlines = SendDeadlines(self.deadline)
        self._running = False

    # What each provider supplies.

    async def _open(self) -> None:
        """Load credentials and build connections (lazily connecting); raise on unusable configuration."""
        raise NotImplementedError

    async def _close(self) -> None:
        """Close connections and transports."""
        raise NotImplementedError

    def _preparer(self, batch: DeliveryBatch) -> Callable[[Any], RequestT | Verdict]:
        """For one batch: item → its request, or the verdict of a local check that already decides it."""
        raise NotImplementedError

    # Request → what makes two requests the same send (the device): a batch never pushes twice to one device.
    _send_key: Callable[[RequestT], Hashable]

    async def _attempt(self, request: RequestT) -> Verdict:
        """Try one request (resends included) and classify the answer; no exception for a per-item problem."""
        raise NotImplementedError

    def _no_answer(self, kind: str, detail: str | None) -> Verdict:
        """The provider table's verdict for a send without an HTTP answer (outcome.TRANSPORT_KINDS)."""
        raise NotImplementedError

    def _address_of(self, request: RequestT) -> str:
        """The token or endpoint of a request (only ever logged as its fingerprint)."""
        raise NotImplementedError

    # The skeleton.

    def not_started(self) -> RuntimeError:
        """The error of a sender used before `start` (or after `close`)."""
        return RuntimeError(f"{type(self).__name__}.start() was not called")

    def in_flight(self) -> int:
        """Requests holding a send slot now (for the metrics exporter)."""
        return self._in_flight.in_use if self._in_flight is not None else 0

    async def start(self) -> None:
        """Open the provider side; run inside the event loop."""
        await self._open()
        self._in_flight = SendSlots(self._max_in_flight)
        self._running = True

    async def close(self) -> None:
        """Close every connection; the sender cannot be used afterwards."""
        self._running = False
        await self._close()
        self._deadlines.close()

    async def send_batch(self, batch: DeliveryBatch) -> list[Verdict]:
        """Send every item concurrently; items with the same `_send_key` share one send and its verdict."""
        if not self._running:
            raise self.not_started()
        return await send_each(batch.items, self._preparer(batch), self._send, self._send_key, self.counters)

    async def _send(self, request: RequestT) -> Verdict:
        slots = self._in_flight
        assert slots is not None
        async with slots:
            # A deadline cancels the attempt; the transport then resets its stream, nothing is left behind.
            started = time.monotonic()
            verdict = await self._deadlines.run(
                self._attempt(request), self._no_answer, on_timeout=self._on_timeout(request, started),
                on_error=lambda: log.exception("%s: unexpected error for %s %s", self.provider, self.address,
                                               self._fingerprint(request)),
            )
            self.counters.observe(time.monotonic() - started)
            return verdict

    def _on_timeout(self, request: RequestT, started: float) -> Callable[[], object]:
        """What runs when the send of ``request``, begun at ``started`` (monotonic), passes its deadline."""
        return lambda: self._log_failure(request, "timeout")

    def refused_after_reauth(self, verdict: Verdict, detail: str) -> Verdict:
        """The verdict when fresh credentials are refused too: our configuration is wrong. Alert, don't loop.

        A client retries a REAUTH answer once with renewed credentials (a new OAuth token, a re-signed
        VAPID header); a second REAUTH for the same send becomes this FATAL_CONFIG verdict.
        """
        return Verdict(Action.FATAL_CONFIG, verdict.reason, verdict.provider_status, None, detail)

    def _fingerprint(self, request: RequestT) -> str:
        return token_fingerprint(self.platform, self._address_of(request))

    def _log_failure(self, request: RequestT, reason: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s for %s %s", self.provider, reason, self.address, self._fingerprint(request))


def h2_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """TLS 1.2+, ALPN h2, trusting ``ca_file`` in addition to the system store when given."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    return context


class PooledH2Sender(BatchSender[RequestT]):
    """A `BatchSender` over one `H2Pool` (APNs, FCM): the pool is replaced when a deadline passes and no
    connection has answered anything since that send began, so a hung connection cannot hold later batches."""

    host: str
    port: int

    def __init__(self, settings: Any, *, deadline: float | None, max_in_flight: int) -> None:
        super().__init__(settings, deadline=deadline, max_in_flight=max_in_flight)
        self._pool: H2Pool | None = None
        self._ssl: ssl.SSLContext | None = None

    @property
    def pool(self) -> H2Pool:
        """The current connection pool (after start)."""
        if self._pool is None:
            raise self.not_started()
        return self._pool

    def _new_pool(self) -> H2Pool:
        return H2Pool(self.host, self.port, ssl_context=self._ssl, max_connections=self.settings.max_connections,
                      connect_timeout=self.settings.timeout_seconds)

    async def _close(self) -> None:
        """Close every connection (sends still in flight end as connection_lost)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _on_timeout(self, request: RequestT, started: float) -> Callable[[], object]:
        pool = self._pool  # the pool this send started on: another send may replace it meanwhile

        def timed_out() -> None:
            if pool is not None and pool.is_stuck(since=started):
                self._replace_pool(pool)
            self._log_failure(request, "timeout")

        return timed_out

    def _replace_pool(self, stuck: H2Pool) -> None:
        """Swap in a fresh pool; the old one's connections are closed (their in-flight sends fail)."""
        if self._pool is not stuck:
            return  # another send already replaced it, or the sender is closed
        log.warning("%s: no answer for %ss on any connection; replacing the connection pool", self.provider,
                    self.deadline)
        self.counters.reconnects += 1
        self._pool = self._new_pool()
        stuck.close()
