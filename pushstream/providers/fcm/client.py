"""FCM HTTP v1 sender: one ``messages:send`` per device over httpx (HTTP/2), service-account OAuth.

The OAuth token is fetched with google-auth's blocking ``refresh`` in a worker thread, one fetch at a time
for the whole sender however many sends need it (providers.md §2.2); ``before_request`` is avoided (it
starts background IAM lookups).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import google.auth.exceptions
import google.auth.transport.requests
import httpx
import orjson
from google.oauth2 import service_account

from pushstream.config import FcmSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.batching import send_each, within_deadline
from pushstream.providers.fcm.classify import (
    classify_fcm_answer,
    classify_fcm_no_answer,
    classify_fcm_oauth_failure,
    httpx_transport_kind,
)
from pushstream.providers.outcome import (
    LOCAL_BAD_ADDRESS,
    LOCAL_BAD_PAYLOAD,
    LOCAL_EXPIRED,
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



def _consume_outcome(task: asyncio.Future[Verdict]) -> None:
    """Retrieve a background attempt's exception so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()

class FcmSender:
    """Sends DeliveryBatches to FCM HTTP v1; one verdict per item (see outcome.Sender).

    ``deadline`` bounds each item's send including one re-auth resend (default settings.timeout_seconds);
    ``max_in_flight`` bounds concurrent sends (default 100 per connection, FCM's usual stream limit);
    ``h2_prior_knowledge`` speaks HTTP/2 without TLS (h2c), which httpx only does when told; it defaults
    to True for an ``http://`` endpoint override (local fakes), and is ignored for https.
    """

    platform = "fcm"

    def __init__(
        self, settings: FcmSettings, *, deadline: float | None = None, max_in_flight: int | None = None,
        h2_prior_knowledge: bool | None = None,
    ) -> None:
        self.settings = settings
        self.deadline = deadline if deadline is not None else settings.timeout_seconds
        self.counters = SendCounters()
        base = (settings.endpoint or FCM_BASE_URL).rstrip("/")
        self.send_url = f"{base}/v1/projects/{settings.project_id}/messages:send"
        plaintext = urlsplit(base).scheme == "http"
        self._h2c = plaintext if h2_prior_knowledge is None else (h2_prior_knowledge and plaintext)
        self._max_in_flight = max_in_flight or 100 * settings.max_connections
        self._in_flight: asyncio.Semaphore | None = None
        self._http: httpx.AsyncClient | None = None
        self._creds: service_account.Credentials | None = None
        self._auth_request = _TimedAuthRequest(settings.timeout_seconds)
        self._refreshing: asyncio.Future[None] | None = None

    @property
    def credentials(self) -> service_account.Credentials:
        """The service-account credentials (after start); their token is what sends carry."""
        if self._creds is None:
            raise RuntimeError("FcmSender.start() was not called")
        return self._creds

    async def start(self) -> None:
        """Load the service account and open the HTTP client; fetches a first token (best effort)."""
        self._creds = service_account.Credentials.from_service_account_file(
            str(self.settings.credentials_file), scopes=list(FCM_SCOPES)
        )
        verify: ssl.SSLContext | bool = True
        if self.settings.ca_file:
            verify = ssl.create_default_context()
            verify.load_verify_locations(cafile=str(self.settings.ca_file))
        self._http = httpx.AsyncClient(
            http1=not self._h2c,
            http2=True,
            verify=verify,
            timeout=httpx.Timeout(self.settings.timeout_seconds),
            limits=httpx.Limits(max_connections=self.settings.max_connections,
                                max_keepalive_connections=self.settings.max_connections),
        )
        self._in_flight = asyncio.Semaphore(self._max_in_flight)
        log.info("FCM sender ready: %s as %s", self.send_url, self._creds.service_account_email)
        try:
            await self._refresh(stale=None)
        except Exception as exc:  # the first send retries; a wrong key shows up as FATAL_CONFIG there
            log.warning("FCM: first OAuth token fetch failed: %s", type(exc).__name__)

    async def close(self) -> None:
        """Close the HTTP client and the token transport."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._auth_request.session.close()

    async def send_batch(self, batch: DeliveryBatch) -> list[Verdict]:
        """Send every item concurrently; items with the same token share one send."""
        if self._http is None:
            raise RuntimeError("FcmSender.start() was not called")
        ttl = remaining_ttl(batch.expires_at)
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
        return FcmRequest(token, orjson.dumps({"message": message}))

    async def _send(self, request: FcmRequest) -> Verdict:
        token, body = request
        assert self._in_flight is not None
        async with self._in_flight:
            # The deadline must not cancel httpx mid-request: a cancelled HTTP/2 stream can leave httpcore's
            # connection state broken (LocalProtocolError for every later send on it, seen under overload).
            # The request finishes in the background, bounded by httpx's own timeout; its answer is dropped.
            attempt = asyncio.ensure_future(self._attempt(body))
            attempt.add_done_callback(_consume_outcome)
            return await within_deadline(
                asyncio.shield(attempt), self.deadline, classify_fcm_no_answer,
                on_timeout=lambda: self._log_failure(token, "timeout"),
                on_error=lambda: log.exception("FCM: unexpected error for token %s",
                                               token_fingerprint(self.platform, token)),
            )

    async def _attempt(self, body: bytes) -> Verdict:
        assert self._http is not None
        reauthed = False
        while True:
            try:
                bearer = await self._bearer()
            except google.auth.exceptions.RefreshError as exc:
                # Refused by the token endpoint (bad key, unknown account) unless google-auth says retryable.
                return classify_fcm_oauth_failure(reachable=not exc.retryable, detail=type(exc).__name__)
            except google.auth.exceptions.GoogleAuthError as exc:  # TransportError: endpoint unreachable
                return classify_fcm_oauth_failure(reachable=False, detail=type(exc).__name__)
            self.counters.sent += 1
            try:
                response = await self._http.post(
                    self.send_url, content=body,
                    headers={"authorization": f"Bearer {bearer}", "content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                return classify_fcm_no_answer(httpx_transport_kind(exc), type(exc).__name__)
            verdict = classify_fcm_answer(response.status_code, response.content,
                                          response.headers.get("retry-after"))
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

    async def _bearer(self) -> str:
        creds = self._creds
        assert creds is not None
        if not creds.valid:  # no token yet, or within google-auth's refresh threshold of expiry
            await self._refresh(stale=creds.token)
        return str(creds.token)

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
