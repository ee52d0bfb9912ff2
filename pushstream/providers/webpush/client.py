"""Web Push sender: RFC 8291 encryption and RFC 8292 VAPID done here, POSTed over one shared aiohttp session.

Per message (providers.md §3):
- the plaintext is checked against RFC 8291's 3993-byte limit, then encrypted with a fresh ephemeral key
  (crypto.py); subscription keys are decoded once and kept in a small bounded cache;
- the VAPID ``Authorization`` is signed once per push-service origin (``aud`` = that origin) and reused until
  an hour before its ``exp`` (vapid.py);
- ``TTL`` is always sent (RFC 8030 requires it), with ``Urgency`` and, for a collapse key, ``Topic``;
- answers and network errors are classified by classify.py's table; nothing raises out of send_batch.

Encryption (~70 µs/message, mostly two P-256 scalar multiplications) stays on the event loop: on a 2-core
box a thread pool only adds GIL contention and latency.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from typing import Any, NamedTuple

import aiohttp
import orjson
from yarl import URL

from pushstream.config import WebPushSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.batching import send_each, within_deadline
from pushstream.providers.outcome import (
    LOCAL_BAD_ADDRESS,
    LOCAL_BAD_PAYLOAD,
    LOCAL_EXPIRED,
    LOCAL_PAYLOAD_TOO_LARGE,
    Action,
    SendCounters,
    Verdict,
    remaining_ttl,
)
from pushstream.providers.webpush.classify import (
    aiohttp_transport_kind,
    classify_webpush_answer,
    classify_webpush_no_answer,
)
from pushstream.providers.webpush.crypto import SubscriptionKeys, decode_subscription_keys, encrypt
from pushstream.providers.webpush.payload import MAX_PLAINTEXT_BYTES, topic_for
from pushstream.providers.webpush.vapid import VapidSigner, load_vapid_key, origin_of
from pushstream.rules.keys import token_fingerprint

__all__ = ["VapidSigner", "WebPushRequest", "WebPushSender", "load_vapid_key", "origin_of", "topic_for"]

log = logging.getLogger(__name__)

# When a notification has no TTL: keep it as long as services do (4 weeks, like FCM's default).
DEFAULT_TTL_SECONDS = 28 * 24 * 3600
KEY_CACHE_SIZE = 4096  # decoded subscription keys (a public key object each) kept across batches
_DETAIL_MAX = 200
_VAPID_CHECK_ORIGIN = "https://push.example.invalid"


class WebPushRequest(NamedTuple):
    """One push: the endpoint (what makes two items the same send), its origin, decoded keys, plaintext."""

    endpoint: str
    origin: str
    keys: SubscriptionKeys
    data: bytes


class WebPushSender:
    """Sends DeliveryBatches to Web Push services; one verdict per item (see outcome.Sender).

    ``deadline`` bounds each item's send including one re-signed resend (default
    settings.timeout_seconds); at most ``max_in_flight`` sends run at once (default
    settings.max_connections, the aiohttp connector limit: HTTP/1.1 carries one request per connection).
    ``ssl_context`` is for push services behind a private CA (tests); WebPushSettings has no ca_file.
    """

    platform = "webpush"

    def __init__(
        self, settings: WebPushSettings, *, deadline: float | None = None, max_in_flight: int | None = None,
        ssl_context: Any = None,
    ) -> None:
        self.settings = settings
        self.deadline = deadline if deadline is not None else settings.timeout_seconds
        self.counters = SendCounters()
        self._max_in_flight = max_in_flight or settings.max_connections
        self._ssl = ssl_context if ssl_context is not None else True
        self._in_flight: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None
        self._signer: VapidSigner | None = None
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        # Keyed by the subscription's (p256dh, auth) strings; None (unusable keys) is cached too.
        self._keys = functools.lru_cache(maxsize=KEY_CACHE_SIZE)(decode_subscription_keys)

    @property
    def signer(self) -> VapidSigner:
        """The VAPID header cache (after start)."""
        if self._signer is None:
            raise RuntimeError("WebPushSender.start() was not called")
        return self._signer

    async def start(self) -> None:
        """Load the VAPID key (and check the subject by signing once) and open the shared session."""
        key = load_vapid_key(self.settings.vapid_private_key_file)
        self._signer = VapidSigner(key, self.settings.vapid_subject)  # ValueError on a bad subject
        self._signer.header_for(_VAPID_CHECK_ORIGIN)  # fail at start, not on the first message
        connector = aiohttp.TCPConnector(limit=self.settings.max_connections, ssl=self._ssl)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        self._in_flight = asyncio.Semaphore(self._max_in_flight)
        log.info("Web Push sender ready: VAPID key %s", hashlib.sha256(self._signer.public_key).hexdigest()[:16])

    async def close(self) -> None:
        """Close the shared session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_batch(self, batch: DeliveryBatch) -> list[Verdict]:
        """Send every item concurrently; items with the same endpoint share one send."""
        if self._session is None:
            raise RuntimeError("WebPushSender.start() was not called")
        ttl = remaining_ttl(batch.expires_at)
        send_ttl = DEFAULT_TTL_SECONDS if ttl is None else ttl
        headers = {
            "TTL": str(send_ttl),
            "Urgency": "high" if batch.priority == "high" else "normal",
            "Content-Encoding": "aes128gcm",
        }
        if batch.collapse_key:
            headers["Topic"] = topic_for(batch.collapse_key)
        return await send_each(
            batch.items, lambda item: self._prepare(item, ttl), lambda request: self._send(request, headers),
            key=lambda request: request.endpoint, counters=self.counters,
        )

    def _prepare(self, item: dict[str, Any], ttl: int | None) -> WebPushRequest | Verdict:
        subscription = item.get("subscription")
        keys = None
        endpoint = None
        if isinstance(subscription, dict):
            endpoint = subscription.get("endpoint")
            sub_keys = subscription.get("keys")
            if isinstance(sub_keys, dict):
                p256dh, auth = sub_keys.get("p256dh"), sub_keys.get("auth")
                if isinstance(p256dh, str) and isinstance(auth, str):
                    keys = self._keys(p256dh, auth)
        if keys is None or not (isinstance(endpoint, str) and endpoint.startswith(("https://", "http://"))):
            return classify_webpush_no_answer(LOCAL_BAD_ADDRESS, "item has no usable subscription")
        payload = item.get("payload")
        if not isinstance(payload, dict):
            return classify_webpush_no_answer(LOCAL_BAD_PAYLOAD, "item has no payload object")
        if ttl is not None and ttl <= 0:
            return classify_webpush_no_answer(LOCAL_EXPIRED)
        data = orjson.dumps(payload)
        if len(data) > MAX_PLAINTEXT_BYTES:
            # RFC 8291 §4: more would not fit one 4096-byte record; services answer 413 or worse.
            too_large = f"{len(data)} > {MAX_PLAINTEXT_BYTES} bytes"
            return classify_webpush_no_answer(LOCAL_PAYLOAD_TOO_LARGE, too_large)
        return WebPushRequest(endpoint, origin_of(endpoint), keys, data)

    async def _send(self, request: WebPushRequest, headers: dict[str, str]) -> Verdict:
        assert self._in_flight is not None
        async with self._in_flight:
            return await within_deadline(
                self._attempt(request, headers), self.deadline, classify_webpush_no_answer,
                on_timeout=lambda: self._log_failure(request, "timeout"),
                on_error=lambda: log.exception("Web Push: unexpected error for endpoint %s",
                                               self._fingerprint(request)),
            )

    async def _attempt(self, request: WebPushRequest, headers: dict[str, str]) -> Verdict:
        assert self._session is not None and self._signer is not None
        try:
            url = URL(request.endpoint)
        except (ValueError, TypeError) as exc:
            return classify_webpush_no_answer(LOCAL_BAD_ADDRESS, type(exc).__name__)
        body = encrypt(request.data, request.keys)  # once: a re-signed resend carries the same message
        resigned = False
        while True:
            authorization = self._signer.header_for(request.origin)
            self.counters.sent += 1
            try:
                async with self._session.post(
                    url, data=body, headers={**headers, "Authorization": authorization}
                ) as response:
                    status = response.status
                    if 200 <= status < 300:
                        await response.read()  # so the connection goes back to the pool
                        verdict = classify_webpush_answer(status)
                    else:
                        text = (await response.read())[:_DETAIL_MAX].decode("utf-8", "replace")
                        verdict = classify_webpush_answer(status, response.headers.get("Retry-After"), text)
            except aiohttp.InvalidURL as exc:
                return classify_webpush_no_answer(LOCAL_BAD_ADDRESS, type(exc).__name__)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                # aiohttp's own timeouts land here; our deadline arrives as CancelledError instead.
                return classify_webpush_no_answer(aiohttp_transport_kind(exc), type(exc).__name__)
            if verdict.action is Action.REAUTH:
                if not resigned:
                    resigned = True
                    self._signer.invalidate(request.origin, authorization)
                    self.counters.auth_refreshes += 1
                    self.counters.resent += 1
                    continue
                # A fresh signature is refused too: the subscription was made for another VAPID key.
                return Verdict(Action.FATAL_CONFIG, verdict.reason, verdict.provider_status, None,
                               "VAPID rejected after re-signing")
            if verdict.action is not Action.DELIVERED:
                self._log_failure(request, verdict.reason or "failed")
            return verdict

    def _fingerprint(self, request: WebPushRequest) -> str:
        return token_fingerprint(self.platform, request.endpoint)

    def _log_failure(self, request: WebPushRequest, reason: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Web Push: %s for endpoint %s", reason, self._fingerprint(request))
