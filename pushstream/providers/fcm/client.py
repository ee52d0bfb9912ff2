"""FCM HTTP v1 sender: one ``messages:send`` per device over HTTP/2 (pushstream.providers.h2transport),
service-account OAuth.

HTTP/2 over TLS (ALPN h2) to Google, or h2c (prior knowledge) to an ``http://`` endpoint override (the local
fake). The constant headers (path, authority, content-type, ``authorization``) are HPACK-indexed, so a
request costs a few header bytes besides its body; every connection obeys the server's stream limit, GOAWAY
resends the unprocessed streams on a new connection.

The OAuth token is fetched with google-auth's blocking ``refresh`` in a worker thread, one fetch at a time
for the whole sender however many sends need it (providers.md §2.2); ``before_request`` is avoided (it
starts background IAM lookups).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import google.auth._helpers
import google.auth.exceptions
import google.auth.transport.requests
import orjson
from google.oauth2 import service_account

from pushstream.config import FcmSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.batching import SendDeadlines, SendSlots, send_each
from pushstream.providers.fcm.classify import (
    classify_fcm_answer,
    classify_fcm_no_answer,
    classify_fcm_oauth_failure,
)
from pushstream.providers.h2transport import (
    ConnectFailed,
    H2Pool,
    H2TransportError,
    Header,
    StreamLost,
    StreamUnprocessed,
)
from pushstream.providers.outcome import (
    LOCAL_BAD_ADDRESS,
    LOCAL_BAD_PAYLOAD,
    LOCAL_EXPIRED,
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

FCM_BASE_URL = "https://fcm.googleapis.com"
FCM_SCOPES = ("https://www.googleapis.com/auth/firebase.messaging",)


class _TimedAuthRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport with our timeout instead of its 120 s default."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:
        return super().__call__(url, method=method, body=body, headers=headers,
                                timeout=timeout or self._timeout, **kwargs)


class FcmRequest(NamedTuple):
    """One ``messages:send``: the device token (also what makes two items the same send) and the body."""

    token: str
    body: bytes


class FcmSender:
    """Sends DeliveryBatches to FCM HTTP v1; one verdict per item (see outcome.Sender).

    ``deadline`` bounds each item's send including one re-auth resend (default settings.timeout_seconds);
    ``max_in_flight`` bounds concurrent sends (default 100 per connection, FCM's usual stream limit).
    An ``http://`` endpoint override is spoken as h2c (HTTP/2 with prior knowledge, what the fake serves);
    ``h2_prior_knowledge=False`` (HTTP/1.1 to it) is not supported any more. ``max_resends`` bounds resends
    of requests the server provably did not process (GOAWAY, REFUSED_STREAM).
    """

    platform = "fcm"

    def __init__(
        self, settings: FcmSettings, *, deadline: float | None = None, max_in_flight: int | None = None,
        h2_prior_knowledge: bool | None = None, max_resends: int = 2,
    ) -> None:
        self.settings = settings
        self.deadline = deadline if deadline is not None else settings.timeout_seconds
        self.max_resends = max_resends
        self.counters = SendCounters()
        base = (settings.endpoint or FCM_BASE_URL).rstrip("/")
        url = urlsplit(base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"fcm.endpoint must be an http(s):// URL, got {base!r}")
        self._plaintext = url.scheme == "http"
        if self._plaintext and h2_prior_knowledge is False:
            raise ValueError("FcmSender speaks HTTP/2 only: an http:// endpoint is always h2c")
        self.host = url.hostname
        self.port = url.port or (80 if self._plaintext else 443)
        path = f"{url.path}/v1/projects/{settings.project_id}/messages:send"
        self.send_url = f"{base}/v1/projects/{settings.project_id}/messages:send"
        self._max_in_flight = max_in_flight or 100 * settings.max_connections
        self._in_flight: SendSlots | None = None
        self._deadlines = SendDeadlines(self.deadline)
        self._pool: H2Pool | None = None
        self._ssl: ssl.SSLContext | None = None
        self._creds: service_account.Credentials | None = None
        self._auth_request = _TimedAuthRequest(settings.timeout_seconds)
        self._refreshing: asyncio.Future[None] | None = None
        self._bearer_cache: tuple[str, bytes] = ("", b"")
        # The token and expiry last found valid, and until when (epoch seconds) that holds.
        self._checked: tuple[str | None, dt.datetime | None, float] = (None, None, 0.0)
        # Constant for every request of this sender: HPACK-indexed after the first one on a connection.
        self._headers: list[Header] = [
            (b":method", b"POST", False),
            (b":scheme", url.scheme.encode(), False),
            (b":path", path.encode(), False),
            (b":authority", url.netloc.encode("idna"), False),
            (b"content-type", b"application/json", False),
        ]

    @property
    def credentials(self) -> service_account.Credentials:
        """The service-account credentials (after start); their token is what sends carry."""
        if self._creds is None:
            raise RuntimeError("FcmSender.start() was not called")
        return self._creds

    @property
    def pool(self) -> H2Pool:
        """The current connection pool (after start)."""
        if self._pool is None:
            raise RuntimeError("FcmSender.start() was not called")
        return self._pool

    def in_flight(self) -> int:
        """Requests holding a send slot now (for the metrics exporter)."""
        return self._in_flight.in_use if self._in_flight is not None else 0

    async def start(self) -> None:
        """Load the service account and build the (lazily connecting) pool; fetches a first token (best effort)."""
        self._creds = service_account.Credentials.from_service_account_file(
            str(self.settings.credentials_file), scopes=list(FCM_SCOPES)
        )
        if not self._plaintext:
            context = ssl.create_default_context()
            if self.settings.ca_file:
                context.load_verify_locations(cafile=str(self.settings.ca_file))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.set_alpn_protocols(["h2"])
            self._ssl = context
        self._pool = self._new_pool()
        self._in_flight = SendSlots(self._max_in_flight)
        log.info("FCM sender ready: %s as %s", self.send_url, self._creds.service_account_email)
        try:
            await self._refresh(stale=None)
        except Exception as exc:  # the first send retries; a wrong key shows up as FATAL_CONFIG there
            log.warning("FCM: first OAuth token fetch failed: %s", type(exc).__name__)

    def _new_pool(self) -> H2Pool:
        return H2Pool(self.host, self.port, ssl_context=self._ssl, max_connections=self.settings.max_connections,
                      connect_timeout=self.settings.timeout_seconds)

    async def close(self) -> None:
        """Close the connections (sends still in flight end as connection_lost) and the token transport."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._deadlines.close()
        self._auth_request.session.close()

    async def send_batch(self, batch: DeliveryBatch) -> list[Verdict]:
        """Send every item concurrently; items with the same token share one send."""
        if self._pool is None:
            raise RuntimeError("FcmSender.start() was not called")
        # ttl 0 (now or never) goes out as rendered ("0s"/TTL 0/apns-expiration 0), however late.
        ttl = None if batch.ttl == 0 else remaining_ttl(batch.expires_at)
        return await send_each(batch.items, lambda item: self._prepare(batch, item, ttl), self._send,
                               key=lambda request: request.token, counters=self.counters)

    def _prepare(
        self, batch: DeliveryBatch, item: dict[str, Any], ttl: int | None
    ) -> FcmRequest | Verdict:
        token = item.get("token")
        payload = item.get("payload")
        if not isinstance(token, str) or not token:
            return classify_fcm_no_answer(LOCAL_BAD_ADDRESS, "item has no token")
        if not isinstance(payload, dict):
            return classify_fcm_no_answer(LOCAL_BAD_PAYLOAD, "item has no payload object")
        if ttl is not None and ttl <= 0:
            return classify_fcm_no_answer(LOCAL_EXPIRED)
        message = dict(payload)
        message["token"] = token
        if ttl is not None and batch.expires_at is not None:
            _refresh_expiry(message, ttl, int(batch.expires_at))
        try:
            body = orjson.dumps({"message": message})
        except TypeError as exc:
            return classify_fcm_no_answer(LOCAL_BAD_PAYLOAD, str(exc)[:200])
        return FcmRequest(token, body)

    async def _send(self, request: FcmRequest) -> Verdict:
        assert self._in_flight is not None and self._pool is not None
        token = request.token
        async with self._in_flight:
            # A deadline cancels the attempt; the transport then resets its stream, nothing is left behind.
            pool = self._pool
            started = time.monotonic()

            def timed_out() -> None:
                if pool.is_stuck(since=started):
                    self._replace_pool(pool)
                self._log_failure(token, "timeout")

            verdict = await self._deadlines.run(
                self._attempt(request.body), classify_fcm_no_answer, on_timeout=timed_out,
                on_error=lambda: log.exception("FCM: unexpected error for token %s",
                                               token_fingerprint(self.platform, token)),
            )
            self.counters.observe(time.monotonic() - started)
            return verdict

    async def _attempt(self, body: bytes) -> Verdict:
        reauthed = False
        resends = 0
        while True:
            try:
                bearer = await self._bearer()
            except google.auth.exceptions.RefreshError as exc:
                # Refused by the token endpoint (bad key, unknown account) unless google-auth says retryable.
                return classify_fcm_oauth_failure(reachable=not exc.retryable, detail=type(exc).__name__)
            except google.auth.exceptions.GoogleAuthError as exc:  # TransportError: endpoint unreachable
                return classify_fcm_oauth_failure(reachable=False, detail=type(exc).__name__)
            cached = self._bearer_cache
            if cached[0] != bearer:
                cached = self._bearer_cache = (bearer, f"Bearer {bearer}".encode("ascii"))
            pool = self._pool
            if pool is None:
                return classify_fcm_no_answer(TRANSPORT_UNPROCESSED, "sender closed")
            try:
                connection = pool.ready_connection() or await pool.acquire()
            except ConnectFailed as exc:
                log.warning("FCM: cannot connect to %s:%s: %s", self.host, self.port, exc)
                return classify_fcm_no_answer(TRANSPORT_CONNECT_FAILED, str(exc)[:200] or None)
            self.counters.sent += 1
            try:
                response = await connection.request([*self._headers, (b"authorization", cached[1], False)], body)
            except StreamUnprocessed as exc:
                if resends < self.max_resends:
                    resends += 1
                    self.counters.resent += 1
                    continue
                return classify_fcm_no_answer(TRANSPORT_UNPROCESSED, str(exc) or None)
            except StreamLost as exc:
                return classify_fcm_no_answer(TRANSPORT_CONNECTION_LOST, str(exc) or None)
            except H2TransportError as exc:
                return classify_fcm_no_answer(TRANSPORT_ERROR, str(exc)[:200] or None)
            retry_after = response.header(b"retry-after")
            verdict = classify_fcm_answer(response.status, response.body,
                                          retry_after.decode("ascii", "replace") if retry_after else None)
            if verdict.action is Action.REAUTH:
                if not reauthed:
                    reauthed = True
                    await self._refresh(stale=bearer)
                    self.counters.resent += 1
                    continue
                # A freshly fetched token is refused too: the account lacks access. Alert, don't loop.
                return Verdict(Action.FATAL_CONFIG, verdict.reason, verdict.provider_status, None,
                               "still unauthenticated after an OAuth token refresh")
            return verdict

    def _replace_pool(self, stuck: H2Pool) -> None:
        """Swap in a fresh pool; the old one's connections are closed (their in-flight sends fail)."""
        if self._pool is not stuck:
            return  # another send already replaced it, or the sender is closed
        log.warning("FCM: no answer for %ss on any connection; replacing the connection pool", self.deadline)
        self.counters.reconnects += 1
        self._pool = self._new_pool()
        stuck.close()

    async def _bearer(self) -> str:
        creds = self._creds
        assert creds is not None
        token, expiry, valid_until = self._checked
        if creds.token is token and creds.expiry is expiry and token is not None and time.time() < valid_until:
            return str(token)  # google-auth's ``valid`` costs more than the rest of the send's bookkeeping
        if not creds.valid:  # no token yet, or within google-auth's refresh threshold of expiry
            await self._refresh(stale=creds.token)
        token, expiry = creds.token, creds.expiry
        if token is not None and expiry is not None:
            until = expiry.replace(tzinfo=dt.UTC).timestamp() - google.auth._helpers.REFRESH_THRESHOLD.total_seconds()
            self._checked = (token, expiry, until)
        return str(token)

    async def _refresh(self, stale: str | None) -> None:
        """Fetch a new OAuth token unless one newer than ``stale`` exists; concurrent callers share one fetch.

        The fetch runs as its own task, shielded: a send whose deadline passes does not cancel it.
        """
        creds = self._creds
        assert creds is not None
        if self._refreshing is None:
            if creds.token is not None and creds.token != stale and creds.valid:
                return
            self._refreshing = asyncio.ensure_future(self._fetch_token())
        await asyncio.shield(self._refreshing)

    async def _fetch_token(self) -> None:
        assert self._creds is not None
        try:
            started = time.monotonic()
            await asyncio.to_thread(self._creds.refresh, self._auth_request)
            self.counters.auth_refreshes += 1
            log.info("FCM: OAuth token refreshed in %.0f ms", (time.monotonic() - started) * 1000)
        finally:
            self._refreshing = None

    def _log_failure(self, token: str, reason: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("FCM: %s for token %s", reason, token_fingerprint(self.platform, token))


def _refresh_expiry(message: dict[str, Any], ttl: int, expires_at: int) -> None:
    """Make the message's per-platform lifetimes say what is left of the notification's TTL now.

    The router rendered them from the original TTL; a retry sent later must not extend the lifetime.
    Copies the nested dicts: payload objects may be shared by many items.
    """
    android = message.get("android")
    if isinstance(android, dict) and "ttl" in android:
        message["android"] = {**android, "ttl": f"{ttl}s"}
    apns = message.get("apns")
    if isinstance(apns, dict):
        headers = {**(apns.get("headers") or {}), "apns-expiration": str(expires_at)}
        message["apns"] = {**apns, "headers": headers}
    webpush = message.get("webpush")
    if isinstance(webpush, dict) and "TTL" in (webpush.get("headers") or {}):
        message["webpush"] = {**webpush, "headers": {**webpush["headers"], "TTL": str(ttl)}}
