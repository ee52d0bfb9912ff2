"""APNs sender: HTTP/2 over TLS (pushstream.providers.h2transport) with token (.p8 JWT) authentication.

- one provider JWT per key for every connection of the process, renewed every 40 min (Apple: 20 to 60),
  sent as an HPACK-indexed header (one byte per request after the first on a connection);
- up to ``max_connections`` connections; each obeys the server's MAX_CONCURRENT_STREAMS (APNs allows one
  stream until a request with a valid JWT, then raises it), further requests queue on a connection;
- on GOAWAY, only the unprocessed streams (id > last_stream_id) fail, and are resent on a new connection;
  REFUSED_STREAM is resent likewise; a stream in flight when its connection dies is ``connection_lost``;
- a deadline around every send (a cancelled stream is reset); when one passes and no connection has
  answered anything since the send began, the whole pool is replaced so a hung connection cannot hold
  later batches;
- deterministic ``apns-id`` (uuid5 of notification and device): a resend carries the same id.

Certificate auth is not supported: token auth is what the config describes (ApnsSettings has no cert).
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import time
import uuid
from collections.abc import Callable
from operator import attrgetter
from typing import Any
from urllib.parse import urlsplit

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushstream.config import ApnsSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.apns.attempt import next_step, request_headers, token_renewal
from pushstream.providers.apns.classify import apns_rule, classify_apns_answer, classify_apns_no_answer
from pushstream.providers.apns.payload import MAX_PAYLOAD_BYTES, apns_priority, push_type
from pushstream.providers.base import PooledH2Sender, h2_ssl_context
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
    LOCAL_PAYLOAD_TOO_LARGE,
    TRANSPORT_CONNECT_FAILED,
    TRANSPORT_CONNECTION_LOST,
    TRANSPORT_ERROR,
    TRANSPORT_UNPROCESSED,
    Action,
    Verdict,
    remaining_ttl,
)

log = logging.getLogger(__name__)

PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.sandbox.push.apple.com"  # Apple's documented name
APNS_PORT = 443
# Namespace of the deterministic apns-id: uuid5(namespace, "<notification_id>/<device_id>").
APNS_ID_NAMESPACE = uuid.UUID("8aa0fa1e-32df-4e74-9916-14f77a4ee605")
MAX_COLLAPSE_ID_BYTES = 64


_NAMESPACE_BYTES = APNS_ID_NAMESPACE.bytes


def apns_id_for(notification_id: str, device_id: str) -> str:
    """The ``apns-id`` of one notification to one device: stable across resends and retries.

    ``str(uuid.uuid5(APNS_ID_NAMESPACE, f"{notification_id}/{device_id}"))``, computed without building a
    UUID object (a quarter of the cost; it runs once per push).
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{notification_id}/{device_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class ProviderToken:
    """The provider JWT of one signing key, shared by every connection of the process.

    Re-signed every ``LIFETIME`` seconds; on ``ExpiredProviderToken`` it is re-signed at most once per
    ``MIN_RENEW_INTERVAL`` (Apple answers TooManyProviderTokenUpdates to faster renewals).
    """

    LIFETIME = 40 * 60
    MIN_RENEW_INTERVAL = 20 * 60

    def __init__(
        self, signing_key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = signing_key
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._header: str | None = None
        self._header_bytes = b""
        self.issued_at = 0
        self.signed = 0  # how many JWTs were signed (a counter for metrics and tests)

    def get_header(self) -> str:
        """``bearer <JWT>``, re-signed when older than LIFETIME."""
        if self._header is None or self._clock() - self.issued_at >= self.LIFETIME:
            self._sign()
        assert self._header is not None
        return self._header

    def header_value(self) -> bytes:
        """``get_header()`` as the bytes the HTTP/2 layer sends (encoded once per JWT)."""
        if self._header is None or self._clock() - self.issued_at >= self.LIFETIME:
            self._sign()
        return self._header_bytes

    def renew(self, rejected_issued_at: int) -> bool:
        """Re-sign after APNs rejected the JWT issued at ``rejected_issued_at``; False if too soon."""
        decision = token_renewal(self.issued_at, rejected_issued_at, self._clock(), self.MIN_RENEW_INTERVAL)
        if decision == "sign":
            self._sign()
        return decision != "too_soon"

    def _sign(self) -> None:
        self.issued_at = int(self._clock())
        token = jwt.encode({"iss": self._team_id, "iat": self.issued_at}, self._key, algorithm="ES256",
                           headers={"kid": self._key_id})
        self._header = f"bearer {token}"
        self._header_bytes = self._header.encode("ascii")
        self.signed += 1


# One ProviderToken per (team, key id, key fingerprint) for the whole process.
_PROVIDER_TOKENS: dict[tuple[str, str, str], ProviderToken] = {}


def load_signing_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """Load the .p8 (PKCS#8 PEM, P-256) APNs signing key; ValueError if it is not one."""
    with open(path, "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: not a P-256 (ES256) private key")
    return key


def key_fingerprint(key: ec.EllipticCurvePrivateKey) -> str:
    """A short id of a key pair that is safe to log (hash of the public half)."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(public).hexdigest()[:16]


def shared_provider_token(key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str) -> ProviderToken:
    """The process-wide ProviderToken for this key."""
    ident = (team_id, key_id, key_fingerprint(key))
    token = _PROVIDER_TOKENS.get(ident)
    if token is None:
        token = _PROVIDER_TOKENS[ident] = ProviderToken(key, key_id, team_id)
    return token


def _error_body(body: bytes) -> tuple[str | None, int | None]:
    """``reason`` and ``timestamp`` of an APNs error body (None, None when absent or not JSON)."""
    if not body:
        return None, None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    reason = parsed.get("reason")
    timestamp = parsed.get("timestamp")
    return (reason if isinstance(reason, str) else None), (timestamp if isinstance(timestamp, int) else None)



class ApnsRequest:
    """One push ready to send: the device token, its apns-id, the encoded body and every header but
    ``authorization`` (added per attempt: a re-auth resend carries the new JWT)."""

    __slots__ = ("apns_id", "body", "device_token", "headers")

    def __init__(self, device_token: str, apns_id: str, body: bytes, headers: list[Header]) -> None:
        self.device_token = device_token
        self.apns_id = apns_id
        self.body = body
        self.headers = headers


def endpoint_for(settings: ApnsSettings) -> tuple[str, int]:
    """Host and port of the configured endpoint (``settings.endpoint`` overrides Apple's host)."""
    if settings.endpoint:
        url = urlsplit(settings.endpoint)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"apns.endpoint must be an https:// URL, got {settings.endpoint!r}")
        return url.hostname, url.port or APNS_PORT
    return (SANDBOX_HOST if settings.environment == "sandbox" else PRODUCTION_HOST), APNS_PORT


def ssl_context_for(settings: ApnsSettings) -> ssl.SSLContext:
    """TLS 1.2+, ALPN h2, trusting ``settings.ca_file`` in addition to the system store when given."""
    return h2_ssl_context(settings.ca_file)



class ApnsSender(PooledH2Sender[ApnsRequest]):
    """Sends DeliveryBatches to APNs; one verdict per item (see outcome.Sender and providers.base).

    ``deadline`` bounds each item's send including in-batch resends (default: settings.timeout_seconds);
    ``max_in_flight`` bounds concurrent sends (default: 250 per connection); sends waiting for a stream
    count against their deadline, so keep it near what the connections can carry.
    """

    platform = "apns"
    provider = "APNs"
    address = "token"
    _send_key = attrgetter("apns_id")  # the same device in one batch: one send (same apns-id)

    def __init__(
        self, settings: ApnsSettings, *, deadline: float | None = None, max_in_flight: int | None = None,
        max_resends: int = 2,
    ) -> None:
        super().__init__(settings, deadline=deadline, max_in_flight=max_in_flight or 250 * settings.max_connections)
        self.max_resends = max_resends
        self.host, self.port = endpoint_for(settings)
        self._token: ProviderToken | None = None
        host = self.host.encode("idna")
        # Constant for every request of this sender: HPACK-indexed after the first one on a connection.
        self._head: list[Header] = [
            (b":method", b"POST", False),
            (b":scheme", b"https", False),
            (b":authority", host, False),
        ]
        self._common: list[Header] = [(b"host", host, False), (b"apns-topic", settings.topic.encode(), False)]

    @property
    def token(self) -> ProviderToken:
        """The shared provider JWT (after start)."""
        if self._token is None:
            raise self.not_started()
        return self._token

    async def _open(self) -> None:
        """Load the signing key and build the (lazily connecting) pool."""
        key = load_signing_key(self.settings.key_file)
        self._token = shared_provider_token(key, self.settings.key_id, self.settings.team_id)
        self._ssl = ssl_context_for(self.settings)
        self._pool = self._new_pool()
        log.info("APNs sender ready: %s:%s topic=%s key_id=%s key=%s", self.host, self.port, self.settings.topic,
                 self.settings.key_id, key_fingerprint(key))

    def _preparer(self, batch: DeliveryBatch) -> Callable[[dict[str, Any]], ApnsRequest | Verdict]:
        """Items with the same device share one send (same apns-id)."""
        # ttl 0 (now or never) is sent with apns-expiration 0, however late.
        ttl = None if batch.ttl == 0 else remaining_ttl(batch.expires_at)
        # Decided for the whole batch, reported after each item's own checks (token, payload).
        late = classify_apns_no_answer(LOCAL_EXPIRED) if ttl is not None and ttl <= 0 else None
        collapse_id = batch.collapse_key or None
        bad_collapse = None
        if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID_BYTES:
            # APNs answers BadCollapseId; a shortened id would collapse unrelated notifications.
            too_long = f"collapse id over {MAX_COLLAPSE_ID_BYTES} bytes"
            bad_collapse = classify_apns_no_answer(LOCAL_BAD_PAYLOAD, too_long)
        tails = self._header_tails(batch, collapse_id)
        notification_id = batch.notification_id
        return lambda item: self._prepare(notification_id, item, tails, late, bad_collapse)

    def _no_answer(self, kind: str, detail: str | None) -> Verdict:
        return classify_apns_no_answer(kind, detail)

    def _address_of(self, request: ApnsRequest) -> str:
        return request.device_token

    @staticmethod
    def _header_tails(batch: DeliveryBatch, collapse_id: str | None) -> dict[str, list[Header]]:
        """The headers after apns-id that are the same for every item of the batch of one push type."""
        common: list[Header] = []
        if batch.ttl == 0:
            common.append((b"apns-expiration", b"0", False))  # deliver now or never
        elif batch.expires_at is not None:
            common.append((b"apns-expiration", b"%d" % int(batch.expires_at), False))
        if collapse_id is not None:
            common.append((b"apns-collapse-id", collapse_id.encode(), False))
        tails = {}
        for kind, sample in (("alert", {"aps": {"alert": {}}}), ("background", {"aps": {}})):
            priority = b"%d" % apns_priority(batch.priority, sample)
            tails[kind] = [(b"apns-priority", priority, False), *common, (b"apns-push-type", kind.encode(), False)]
        return tails

    def _prepare(
        self, notification_id: str, item: dict[str, Any], tails: dict[str, list[Header]], late: Verdict | None,
        bad_collapse: Verdict | None,
    ) -> ApnsRequest | Verdict:
        token = item.get("token")
        payload = item.get("payload")
        if not isinstance(token, str) or not token:
            return classify_apns_no_answer(LOCAL_BAD_ADDRESS, "item has no token")
        if not isinstance(payload, dict):
            return classify_apns_no_answer(LOCAL_BAD_PAYLOAD, "item has no payload object")
        if late is not None:
            return late
        try:
            body = orjson.dumps(payload)  # compact UTF-8 JSON: what is sent, and what the limit counts
        except TypeError as exc:
            return classify_apns_no_answer(LOCAL_BAD_PAYLOAD, str(exc)[:200])
        if len(body) > MAX_PAYLOAD_BYTES:
            too_large = f"{len(body)} > {MAX_PAYLOAD_BYTES} bytes"
            return classify_apns_no_answer(LOCAL_PAYLOAD_TOO_LARGE, too_large)
        if bad_collapse is not None:
            return bad_collapse
        if not token.isascii():
            return classify_apns_no_answer(LOCAL_BAD_ADDRESS, "token is not ASCII")
        apns_id = apns_id_for(notification_id, str(item.get("device_id", "")))
        headers = request_headers(self._head, token.encode(), self._common, apns_id.encode(),
                                  tails[push_type(payload)])
        return ApnsRequest(token, apns_id, body, headers)

    async def _attempt(self, request: ApnsRequest) -> Verdict:
        resends = 0
        reconnected = reauthed = False
        token = self.token
        while True:
            pool = self._pool
            if pool is None:
                return classify_apns_no_answer(TRANSPORT_UNPROCESSED, "sender closed")
            try:
                connection = pool.ready_connection() or await pool.acquire()
            except ConnectFailed as exc:
                log.warning("APNs: cannot connect to %s:%s: %s", self.host, self.port, exc)
                return classify_apns_no_answer(TRANSPORT_CONNECT_FAILED, str(exc)[:200] or None)
            auth = token.header_value()
            issued_at = token.issued_at
            self.counters.sent += 1
            try:
                response = await connection.request([*request.headers, (b"authorization", auth, False)],
                                                     request.body)
            except StreamUnprocessed as exc:
                if resends < self.max_resends:
                    resends += 1
                    self.counters.resent += 1
                    continue
                return classify_apns_no_answer(TRANSPORT_UNPROCESSED, str(exc) or None)
            except StreamLost as exc:
                # In flight when the stream or connection died: APNs may have processed it. The agent decides.
                return classify_apns_no_answer(TRANSPORT_CONNECTION_LOST, str(exc) or None)
            except H2TransportError as exc:
                return classify_apns_no_answer(TRANSPORT_ERROR, str(exc)[:200] or None)
            status = response.status
            if status == 200:
                return _DELIVERED
            reason, timestamp = _error_body(response.body)
            retry_after = response.header(b"retry-after")
            verdict = classify_apns_answer(status, reason, timestamp,
                                           retry_after.decode("ascii", "replace") if retry_after else None)
            if verdict.action is not Action.DELIVERED:
                self._log_failure(request, verdict.reason or str(status))
            step = next_step(verdict, apns_rule(status, reason).reconnect, reconnected, reauthed)
            if step == "reconnect":
                reconnected = True
                connection.retire()
                self.counters.resent += 1
                continue
            if step == "renew_token":
                reauthed = True
                if token.renew(issued_at):
                    self.counters.auth_refreshes += 1
                    self.counters.resent += 1
                    continue
            return verdict

    def _log_failure(self, request: ApnsRequest, reason: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("APNs: %s for token %s (apns-id %s)", reason, self._fingerprint(request), request.apns_id)


_DELIVERED = classify_apns_answer(200)  # the same frozen verdict for every success
