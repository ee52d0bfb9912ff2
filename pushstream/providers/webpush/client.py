"""Web Push sender: RFC 8291 encryption and RFC 8292 VAPID done here, POSTed with a lean HTTP/1.1 client.

Per message (providers.md §3):
- the plaintext is checked against RFC 8291's 3993-byte limit, then encrypted with a fresh ephemeral key
  (crypto.py); subscription keys are decoded once and kept in a small bounded cache;
- the VAPID ``Authorization`` is signed once per push-service origin (``aud`` = that origin) and reused until
  an hour before its ``exp`` (vapid.py);
- ``TTL`` is always sent (RFC 8030 requires it), with ``Urgency`` and, for a collapse key, ``Topic``;
- the POST goes over keep-alive HTTP/1.1 connections (http.py: one write per request, ~2.5x less CPU than
  aiohttp, see benchmarks/webpush.py);
- answers and network errors are classified by classify.py's table; nothing raises out of send_batch.

Encryption (~70 µs/message, mostly two P-256 scalar multiplications) stays on the event loop: on a 2-core
box a thread pool only adds GIL contention and latency.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import ssl
from collections.abc import Callable
from operator import attrgetter
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from pushstream.config import WebPushSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.base import BatchSender
from pushstream.providers.outcome import (
    LOCAL_BAD_ADDRESS,
    LOCAL_BAD_PAYLOAD,
    LOCAL_EXPIRED,
    LOCAL_PAYLOAD_TOO_LARGE,
    Action,
    Verdict,
    after_reauth,
    remaining_ttl,
)
from pushstream.providers.webpush.classify import (
    classify_webpush_answer,
    classify_webpush_no_answer,
    http_transport_kind,
)
from pushstream.providers.webpush.crypto import SubscriptionKeys, decode_subscription_keys, encrypt
from pushstream.providers.webpush.http import HttpClient, HttpError
from pushstream.providers.webpush.payload import MAX_PLAINTEXT_BYTES, topic_for
from pushstream.providers.webpush.vapid import VapidSigner, load_vapid_key, origin_of

__all__ = ["VapidSigner", "WebPushRequest", "WebPushSender", "load_vapid_key", "origin_of", "topic_for"]

log = logging.getLogger(__name__)

# When a notification has no TTL: keep it as long as services do (4 weeks, like FCM's default).
DEFAULT_TTL_SECONDS = 28 * 24 * 3600
KEY_CACHE_SIZE = 4096  # decoded subscription keys (a public key object each) kept across batches
_DETAIL_MAX = 200
_VAPID_CHECK_ORIGIN = "https://push.example.invalid"
_DEFAULT_PORTS = {"https": 443, "http": 80}
_HEADER_SAFE = re.compile(r"[!-~]+")  # printable ASCII, no space: nothing can break out of a header line


class WebPushRequest(NamedTuple):
    """One push: the endpoint (what makes two items the same send), where it goes, decoded keys, plaintext."""

    endpoint: str
    origin: str  # scheme://host[:port], the VAPID aud
    scheme: str
    host: str  # for the connection (IPv6 without brackets)
    port: int
    authority: str  # the Host header
    target: str  # path and query
    keys: SubscriptionKeys
    data: bytes
    headers: str  # the header lines every request of its batch shares


def _split_endpoint(endpoint: str) -> tuple[str, str, str, int, str, str] | None:
    """(origin, scheme, host, port, Host header, request target) of an http(s) endpoint; None when unusable.

    The origin is vapid.origin_of's, without parsing the endpoint twice.
    """
    try:
        url = urlsplit(endpoint)
        port = url.port
    except ValueError:
        return None
    host = url.hostname
    authority = url.netloc.rpartition("@")[2]
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    if url.scheme not in _DEFAULT_PORTS or not host or not _HEADER_SAFE.fullmatch(authority):
        return None
    if not _HEADER_SAFE.fullmatch(target) or not target.startswith("/"):
        return None
    return f"{url.scheme}://{url.netloc}", url.scheme, host, port or _DEFAULT_PORTS[url.scheme], authority, target


class WebPushSender(BatchSender[WebPushRequest]):
    """Sends DeliveryBatches to Web Push services; one verdict per item (see outcome.Sender and providers.base).

    ``deadline`` bounds each item's send including one re-signed resend (default
    settings.timeout_seconds); at most ``max_in_flight`` sends run at once (default
    settings.max_connections, the connection limit: HTTP/1.1 carries one request per connection).
    ``ssl_context`` is for push services behind a private CA (tests); WebPushSettings has no ca_file.
    """

    platform = "webpush"
    provider = "Web Push"
    address = "endpoint"
    _send_key = attrgetter("endpoint")  # the same subscription in one batch: one send

    def __init__(
        self, settings: WebPushSettings, *, deadline: float | None = None, max_in_flight: int | None = None,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(settings, deadline=deadline, max_in_flight=max_in_flight or settings.max_connections)
        self._ssl: ssl.SSLContext | None = ssl_context
        self._http: HttpClient | None = None
        self._signer: VapidSigner | None = None
        # Keyed by the subscription's (p256dh, auth) strings; None (unusable keys) is cached too.
        self._keys = functools.lru_cache(maxsize=KEY_CACHE_SIZE)(decode_subscription_keys)

    @property
    def signer(self) -> VapidSigner:
        """The VAPID header cache (after start)."""
        if self._signer is None:
            raise self.not_started()
        return self._signer

    async def _open(self) -> None:
        """Load the VAPID key (and check the subject by signing once); connections open on first use."""
        key = load_vapid_key(self.settings.vapid_private_key_file)
        self._signer = VapidSigner(key, self.settings.vapid_subject)  # ValueError on a bad subject
        self._signer.header_for(_VAPID_CHECK_ORIGIN)  # fail at start, not on the first message
        self._http = HttpClient(max_connections=self.settings.max_connections, ssl=self._ssl)
        log.info("Web Push sender ready: VAPID key %s", hashlib.sha256(self._signer.public_key).hexdigest()[:16])

    async def _close(self) -> None:
        """Close every connection."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _preparer(self, batch: DeliveryBatch) -> Callable[[dict[str, Any]], WebPushRequest | Verdict]:
        ttl = None if batch.ttl == 0 else remaining_ttl(batch.expires_at)  # ttl 0: now or never, however late
        send_ttl = 0 if batch.ttl == 0 else DEFAULT_TTL_SECONDS if ttl is None else ttl
        urgency = "high" if batch.priority == "high" else "normal"
        # The header lines every request of this batch shares (RFC 8030 §5.2-5.4, RFC 8291 §4).
        headers = (f"TTL: {send_ttl}\r\nUrgency: {urgency}\r\n"
                   + (f"Topic: {topic_for(batch.collapse_key)}\r\n" if batch.collapse_key else "")
                   + "Content-Encoding: aes128gcm\r\nContent-Type: application/octet-stream\r\n")
        return lambda item: self._prepare(item, ttl, headers)

    def _no_answer(self, kind: str, detail: str | None) -> Verdict:
        return classify_webpush_no_answer(kind, detail)

    def _address_of(self, request: WebPushRequest) -> str:
        return request.endpoint

    def _prepare(self, item: dict[str, Any], ttl: int | None, headers: str) -> WebPushRequest | Verdict:
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
        where = _split_endpoint(endpoint) if isinstance(endpoint, str) else None
        if keys is None or where is None:
            return classify_webpush_no_answer(LOCAL_BAD_ADDRESS, "item has no usable subscription")
        assert isinstance(endpoint, str)
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
        return WebPushRequest(endpoint, *where, keys, data, headers)

    async def _attempt(self, request: WebPushRequest) -> Verdict:
        assert self._http is not None and self._signer is not None
        body = encrypt(request.data, request.keys)  # once: a re-signed resend carries the same message
        request_line = f"POST {request.target} HTTP/1.1\r\nHost: {request.authority}\r\n{request.headers}"
        resigned = False
        while True:
            authorization = self._signer.header_for(request.origin)
            head = f"{request_line}Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
            self.counters.sent += 1
            try:
                response = await self._http.post(request.scheme, request.host, request.port,
                                                 head.encode("latin-1"), body)
            except (HttpError, TimeoutError, OSError) as exc:
                # Our deadline arrives as CancelledError instead and is handled by the sender's deadlines.
                return classify_webpush_no_answer(http_transport_kind(exc), type(exc).__name__)
            if 200 <= response.status < 300:
                verdict = classify_webpush_answer(response.status)
            else:
                detail = response.body[:_DETAIL_MAX].decode("utf-8", "replace")
                verdict = classify_webpush_answer(response.status, response.headers.get("retry-after"), detail)
            step = after_reauth(verdict, resigned)
            if step == "renew":
                resigned = True
                self._signer.invalidate(request.origin, authorization)
                self.counters.auth_refreshes += 1
                self.counters.resent += 1
                continue
            if step == "refused":  # a fresh signature is refused too: subscribed with another VAPID key
                return self.refused_after_reauth(verdict, "VAPID rejected after re-signing")
            if verdict.action is not Action.DELIVERED:
                self._log_failure(request, verdict.reason or "failed")
            return verdict
