"""Web Push sender: pywebpush's ``webpush_async`` over one shared aiohttp session.

What this adds to pywebpush (providers.md §3.4):
- the VAPID ``Authorization`` is signed once per push-service origin (``aud`` = that origin) and reused until
  an hour before its ``exp`` (12 h, RFC 8292 allows 24); pywebpush is never given ``vapid_claims``, which
  it would mutate and share across origins (wrong ``aud``) and re-sign on every call;
- ``ttl`` and ``timeout`` are always passed (pywebpush defaults: TTL 0, no timeout at all);
- the plaintext is checked against RFC 8291's 3993-byte limit before encrypting (pywebpush does not);
- network errors, which pywebpush lets through unwrapped, become RETRY verdicts.

Encryption (about 0.13 ms/message: an ephemeral P-256 key, ECDH, HKDF, AES-GCM) stays on the event loop:
measured on a 2-core box, pywebpush's encode ran 7.9k/s in one thread and 5.7k/s spread over two threads
(GIL contention), so a thread pool would only add latency.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, Vapid02
from pywebpush import WebPushException, webpush_async

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
from pushstream.providers.webpush.payload import MAX_PLAINTEXT_BYTES, topic_for
from pushstream.rules.keys import token_fingerprint

log = logging.getLogger(__name__)

# When a notification has no TTL: keep it as long as services do (4 weeks, like FCM's default).
DEFAULT_TTL_SECONDS = 28 * 24 * 3600
_DETAIL_MAX = 200




def origin_of(endpoint: str) -> str:
    """``scheme://host[:port]`` of a push endpoint: the VAPID ``aud`` for it."""
    url = urlsplit(endpoint)
    return f"{url.scheme}://{url.netloc}"


def load_vapid_key(path: Path) -> Vapid02:
    """The VAPID signing key from a PEM (PKCS#8 or SEC1) or py_vapid raw/DER file.

    Not ``Vapid.from_file``: it silently generates and writes a new key when the file is missing.
    """
    text = Path(path).read_bytes()
    if b"-----BEGIN" in text:
        key = serialization.load_pem_private_key(text, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"{path}: not a P-256 private key")
        return Vapid02(private_key=key)
    vapid: Vapid02 = Vapid.from_string(private_key=text.decode().strip())
    return vapid


@dataclass(slots=True)
class _SignedHeader:
    header: str
    expires_at: float


class VapidSigner:
    """VAPID ``Authorization`` headers, one per push-service origin, re-signed an hour before expiry."""

    LIFETIME = 12 * 3600  # exp = now + 12 h (RFC 8292: at most 24 h)
    RENEW_BEFORE = 3600

    def __init__(self, key: Vapid02, subject: str, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._subject = subject
        self._clock = clock
        self._cache: dict[str, _SignedHeader] = {}
        self.signed = 0

    def header_for(self, origin: str) -> str:
        """The current header for ``origin``."""
        entry = self._cache.get(origin)
        now = self._clock()
        if entry is None or entry.expires_at - now < self.RENEW_BEFORE:
            expires_at = int(now) + self.LIFETIME
            # A fresh claims dict per signature: py_vapid/pywebpush write into the dicts they are given.
            signed = self._key.sign({"aud": origin, "exp": expires_at, "sub": self._subject})
            entry = self._cache[origin] = _SignedHeader(signed["Authorization"], expires_at)
            self.signed += 1
        return entry.header

    def invalidate(self, origin: str, rejected: str) -> None:
        """Forget ``origin``'s header if it is the one the service rejected (others may have renewed it)."""
        entry = self._cache.get(origin)
        if entry is not None and entry.header == rejected:
            del self._cache[origin]


class WebPushRequest(NamedTuple):
    """One push: the subscription (its endpoint is what makes two items the same send) and the plaintext."""

    subscription: dict[str, Any]
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

    @property
    def signer(self) -> VapidSigner:
        """The VAPID header cache (after start)."""
        if self._signer is None:
            raise RuntimeError("WebPushSender.start() was not called")
        return self._signer

    async def start(self) -> None:
        """Load the VAPID key (and check the subject by signing once) and open the shared session."""
        key = load_vapid_key(self.settings.vapid_private_key_file)
        self._signer = VapidSigner(key, self.settings.vapid_subject)
        self._signer.header_for("https://push.example.invalid")  # py_vapid rejects a bad subject here
        connector = aiohttp.TCPConnector(limit=self.settings.max_connections, ssl=self._ssl)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        self._in_flight = asyncio.Semaphore(self._max_in_flight)
        public = key.public_key.public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)
        log.info("Web Push sender ready: VAPID key %s", hashlib.sha256(public).hexdigest()[:16])

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
        headers = {"Urgency": "high" if batch.priority == "high" else "normal"}
        if batch.collapse_key:
            headers["Topic"] = topic_for(batch.collapse_key)
        send_ttl = DEFAULT_TTL_SECONDS if ttl is None else ttl
        return await send_each(
            batch.items, lambda item: self._prepare(item, ttl),
            lambda request: self._send(request.subscription, request.data, headers, send_ttl),
            key=lambda request: request.subscription["endpoint"], counters=self.counters,
        )

    def _prepare(self, item: dict[str, Any], ttl: int | None) -> WebPushRequest | Verdict:
        subscription = item.get("subscription")
        if not _usable_subscription(subscription):
            return classify_webpush_no_answer(LOCAL_BAD_ADDRESS, "item has no usable subscription")
        assert isinstance(subscription, dict)
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
        return WebPushRequest(subscription, data)

    async def _send(
        self, subscription: dict[str, Any], data: bytes, headers: dict[str, str], ttl: int
    ) -> Verdict:
        assert self._in_flight is not None
        async with self._in_flight:
            return await within_deadline(
                self._attempt(subscription, data, headers, ttl), self.deadline, classify_webpush_no_answer,
                on_timeout=lambda: self._log_failure(subscription, "timeout"),
                on_error=lambda: log.exception("Web Push: unexpected error for endpoint %s",
                                               self._fingerprint(subscription)),
            )

    async def _attempt(
        self, subscription: dict[str, Any], data: bytes, headers: dict[str, str], ttl: int
    ) -> Verdict:
        assert self._session is not None and self._signer is not None
        origin = origin_of(subscription["endpoint"])
        resigned = False
        while True:
            authorization = self._signer.header_for(origin)
            self.counters.sent += 1
            try:
                response = await webpush_async(
                    subscription, data, headers={**headers, "Authorization": authorization}, ttl=ttl,
                    timeout=self._timeout, aiohttp_session=self._session, content_encoding="aes128gcm",
                )
            except WebPushException as exc:
                if exc.status_code is None:  # raised before any request: unusable subscription keys
                    return classify_webpush_no_answer(LOCAL_BAD_ADDRESS, exc.message[:_DETAIL_MAX])
                verdict = classify_webpush_answer(exc.status_code, exc.retry_after, exc.message[:_DETAIL_MAX])
            except (ValueError, TypeError) as exc:  # malformed base64 / key points in the subscription
                return classify_webpush_no_answer(LOCAL_BAD_ADDRESS, type(exc).__name__)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                # aiohttp's own timeouts land here; our deadline arrives as CancelledError instead.
                return classify_webpush_no_answer(aiohttp_transport_kind(exc), type(exc).__name__)
            else:
                verdict = classify_webpush_answer(response.status)
            if verdict.action is Action.REAUTH:
                if not resigned:
                    resigned = True
                    self._signer.invalidate(origin, authorization)
                    self.counters.auth_refreshes += 1
                    self.counters.resent += 1
                    continue
                # A fresh signature is refused too: the subscription was made for another VAPID key.
                return Verdict(Action.FATAL_CONFIG, verdict.reason, verdict.provider_status, None,
                               "VAPID rejected after re-signing")
            if verdict.action is not Action.DELIVERED:
                self._log_failure(subscription, verdict.reason or "failed")
            return verdict

    def _fingerprint(self, subscription: dict[str, Any]) -> str:
        return token_fingerprint(self.platform, str(subscription.get("endpoint")))

    def _log_failure(self, subscription: dict[str, Any], reason: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Web Push: %s for endpoint %s", reason, self._fingerprint(subscription))


def _usable_subscription(subscription: Any) -> bool:
    """An http(s) endpoint, a 65-byte uncompressed P-256 ``p256dh`` and a 16-byte ``auth`` (base64url).

    Checked here because pywebpush's own check fails with IndexError/binascii errors on bad keys.
    """
    if not isinstance(subscription, dict):
        return False
    endpoint = subscription.get("endpoint")
    keys = subscription.get("keys")
    if not (isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")) and isinstance(keys, dict)):
        return False
    p256dh = _b64url_bytes(keys.get("p256dh"))
    auth = _b64url_bytes(keys.get("auth"))
    return p256dh is not None and len(p256dh) == 65 and p256dh[0] == 4 and auth is not None and len(auth) == 16


def _b64url_bytes(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    text = value.strip().rstrip("=").replace("+", "-").replace("/", "_")  # tolerate standard base64 too
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
