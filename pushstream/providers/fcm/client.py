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
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import google.auth._helpers
import google.auth.exceptions
import google.auth.transport.requests
import orjson
from google.oauth2 import service_account

from pushstream.config import FcmSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.base import PooledH2Sender, h2_ssl_context
from pushstream.providers.fcm.classify import (
    classify_fcm_answer,
    classify_fcm_no_answer,
    classify_fcm_oauth_failure,
)
from pushstream.providers.fcm.oauth import bearer_still_valid, token_fetch
from pushstream.providers.h2transport import (
    ConnectFailed,
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
    Verdict,
    after_reauth,
    remaining_ttl,
)

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


class FcmSender(PooledH2Sender[FcmRequest]):
    """Sends DeliveryBatches to FCM HTTP v1; one verdict per item (see outcome.Sender and providers.base).

    ``deadline`` bounds each item's send including one re-auth resend (default settings.timeout_seconds);
    ``max_in_flight`` bounds concurrent sends (default 100 per connection, FCM's usual stream limit).
    An ``http://`` endpoint override is spoken as h2c (HTTP/2 with prior knowledge, what the fake serves);
    ``h2_prior_knowledge=False`` (HTTP/1.1 to it) is not supported any more. ``max_resends`` bounds resends
    of requests the server provably did not process (GOAWAY, REFUSED_STREAM).
    """

    platform = "fcm"
    provider = "FCM"
    address = "token"
    _send_key = attrgetter("token")  # the same token in one batch: one send

    def __init__(
        self, settings: FcmSettings, *, deadline: float | None = None, max_in_flight: int | None = None,
        h2_prior_knowledge: bool | None = None, max_resends: int = 2,
    ) -> None:
        super().__init__(settings, deadline=deadline, max_in_flight=max_in_flight or 100 * settings.max_connections)
        self.max_resends = max_resends
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
            raise self.not_started()
        return self._creds

    async def _open(self) -> None:
        """Load the service account and build the (lazily connecting) pool; fetches a first token (best effort)."""
        self._creds = service_account.Credentials.from_service_account_file(
            str(self.settings.credentials_file), scopes=list(FCM_SCOPES)
        )
        if not self._plaintext:
            self._ssl = h2_ssl_context(self.settings.ca_file)
        self._pool = self._new_pool()
        log.info("FCM sender ready: %s as %s", self.send_url, self._creds.service_account_email)
        try:
            await self._refresh(stale=None)
        except Exception as exc:  # the first send retries; a wrong key shows up as FATAL_CONFIG there
            log.warning("FCM: first OAuth token fetch failed: %s", type(exc).__name__)

    async def _close(self) -> None:
        """Close the connections (sends still in flight end as connection_lost) and the token transport."""
        await super()._close()
        self._auth_request.session.close()

    def _preparer(self, batch: DeliveryBatch) -> Callable[[dict[str, Any]], FcmRequest | Verdict]:
        # ttl 0 (now or never) goes out as rendered ("0s"/TTL 0/apns-expiration 0), however late.
        ttl = None if batch.ttl == 0 else remaining_ttl(batch.expires_at)
        return lambda item: self._prepare(batch, item, ttl)

    def _no_answer(self, kind: str, detail: str | None) -> Verdict:
        return classify_fcm_no_answer(kind, detail)

    def _address_of(self, request: FcmRequest) -> str:
        return request.token

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

    async def _attempt(self, request: FcmRequest) -> Verdict:
        body = request.body
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
            step = after_reauth(verdict, reauthed)
            if step == "renew":
                reauthed = True
                await self._refresh(stale=bearer)
                self.counters.resent += 1
                continue
            if step == "refused":  # a freshly fetched token is refused too: the account lacks access
                return self.refused_after_reauth(verdict, "still unauthenticated after an OAuth token refresh")
            return verdict

    async def _bearer(self) -> str:
        creds = self._creds
        assert creds is not None
        if bearer_still_valid(creds.token, creds.expiry, self._checked, time.time()):
            return str(creds.token)  # google-auth's ``valid`` costs more than the rest of the send's bookkeeping
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
        fetching = self._refreshing is not None
        # google-auth's ``valid`` costs: asked only when no fetch runs and a token other than the refused one exists.
        valid = not fetching and creds.token is not None and creds.token != stale and creds.valid
        step = token_fetch(fetching, creds.token, stale, valid)
        if step == "fresh":
            return
        if step == "fetch":
            self._refreshing = asyncio.ensure_future(self._fetch_token())
        assert self._refreshing is not None
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
