"""Fake Web Push service (RFC 8030 delivery, RFC 8292 VAPID, RFC 8291 aes128gcm), over HTTP/1.1.

Subscriptions are derived from a seed, so any process that knows the seed can hand a sender a subscription
that this fake can decrypt: the user agent's P-256 key and auth secret come from HKDF(seed, sid).
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pushstream.testing.fakes.base import (
    FakeAnswer,
    FakeProvider,
    VerdictCache,
    json_answer,
    parse_json,
    retry_after_header,
)
from pushstream.testing.fakes.credentials import DevSetup, b64url, b64url_decode
from pushstream.testing.fakes.httpserver import Answer, IncomingRequest

MAX_BODY = 4096  # RFC 8030 §7.2: no 413 at or below this
MAX_VAPID_LIFETIME = 24 * 3600  # RFC 8292: exp at most 24 h ahead
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_PUSH_PATH = "/push/"
_SID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HKDF_SALT = b"pushstream fake webpush subscription"


@functools.lru_cache(maxsize=4096)
def subscription_keys(seed: bytes, sid: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The user agent's private key and 16-byte auth secret for subscription ``sid``."""
    material = HKDF(algorithm=hashes.SHA256(), length=48, salt=_HKDF_SALT, info=b"sid:" + sid.encode()).derive(seed)
    scalar = int.from_bytes(material[:32], "big") % (_P256_ORDER - 1) + 1  # a valid private scalar
    return ec.derive_private_key(scalar, ec.SECP256R1()), material[32:]


def webpush_subscription(origin: str, seed: bytes, sid: str) -> dict[str, Any]:
    """A PushSubscription JSON (as a browser would give it) whose payloads the fake can decrypt."""
    private_key, auth = subscription_keys(seed, sid)
    public = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "endpoint": f"{origin}{_PUSH_PATH}{sid}",
        "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
    }


@dataclass(frozen=True, slots=True)
class _VapidCheck:
    problem: str | None
    expires_at: float


def _error(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Answer:
    # Shaped like Mozilla autopush's error JSON (field list unverified, providers.md §3.1).
    body = {"code": status, "error": HTTPStatus(status).phrase, "message": message}
    return json_answer(status, body, headers or [])


class FakeWebPush(FakeProvider):
    """Fake push service: ``POST /push/{sid}``; unregister(sid) makes a subscription answer 410."""

    name = "webpush"

    # pywebpush sends with aiohttp (HTTP/1.1 only); HTTP/2 is served too since it costs nothing here.

    def configure(self, setup: DevSetup) -> None:
        self.seed = setup.webpush_seed
        self._vapid: VerdictCache[_VapidCheck] = VerdictCache()

    @property
    def origin(self) -> str:
        """The push service origin: endpoints live under it and VAPID ``aud`` must equal it."""
        return self.url

    def subscription(self, sid: str) -> dict[str, Any]:
        """A decryptable subscription for ``sid`` on this fake."""
        return webpush_subscription(self.origin, self.seed, sid)

    def handle(self, request: IncomingRequest) -> FakeAnswer:
        """Validate like a push service, decrypt (unless benchmarking), apply faults, answer 201."""
        if not request.path.startswith(_PUSH_PATH):
            return FakeAnswer(_error(404, "no such resource"), reason="not found")
        sid = request.path[len(_PUSH_PATH) :]
        if request.method != "POST":
            return FakeAnswer(_error(405, "push messages are POSTed"), reason="method", key=sid)
        if not _SID.fullmatch(sid):
            return FakeAnswer(_error(410, "unknown subscription"), reason="unknown subscription", key=sid)
        problem = self._check_request(request)
        if problem is not None:
            status, reason = problem
            return FakeAnswer(_error(status, reason), reason=reason, key=sid)
        fault = self.fault_for(sid)
        if fault is not None:
            if fault.unregistered_at_ms is not None:
                return FakeAnswer(_error(410, "subscription expired"), reason="unsubscribed", key=sid)
            reason = fault.reason or HTTPStatus(fault.status).phrase
            return FakeAnswer(_error(fault.status, reason, retry_after_header(fault)), reason=reason, key=sid)
        plaintext: bytes | None = None
        if not self.benchmark:
            private_key, auth = subscription_keys(self.seed, sid)
            try:
                plaintext = http_ece.decrypt(
                    request.body, private_key=private_key, auth_secret=auth, version="aes128gcm"
                )
            except Exception as exc:  # http_ece raises ECEException, struct/ValueError on truncated bodies
                # A real service cannot tell; the fake can, and a sender bug should not pass silently.
                message = f"payload does not decrypt with this subscription's keys: {exc}"
                return FakeAnswer(_error(400, message), reason="undecryptable", key=sid)
        headers = [
            ("location", f"{self.origin}/message/{uuid.uuid4().hex}"),
            ("ttl", request.header("ttl") or "0"),
        ]
        return FakeAnswer(
            Answer(201, headers),
            key=sid,
            plaintext=plaintext,
            json=None if plaintext is None else parse_json(plaintext),
        )

    def _check_request(self, request: IncomingRequest) -> tuple[int, str] | None:
        ttl = request.header("ttl")
        if ttl is None or not ttl.strip().isdigit():
            return 400, "missing or invalid TTL header"
        urgency = request.header("urgency")
        if urgency is not None and urgency not in URGENCIES:
            return 400, "invalid Urgency header"
        topic = request.header("topic")
        if topic is not None and not _TOPIC.fullmatch(topic):
            return 400, "invalid Topic header"
        # aud must be the origin the client addressed (127.0.0.1 or localhost alike).
        host = request.header("host")
        origin = f"http://{host}" if host else self.origin
        vapid_problem = self._check_vapid(request.header("authorization"), origin)
        if vapid_problem is not None:
            return 403, vapid_problem
        if len(request.body) > MAX_BODY:
            return 413, "payload too large"
        if (request.header("content-encoding") or "").lower() != "aes128gcm":
            return 400, "Content-Encoding must be aes128gcm"
        return None

    def _check_vapid(self, header: str | None, origin: str) -> str | None:
        if not header:
            return "missing VAPID authorization"
        cache_key = f"{origin} {header}"
        checked = self._vapid.get(cache_key)
        if checked is None:
            checked = _verify_vapid(header, origin)
            self._vapid.put(cache_key, checked)
        if checked.problem is not None:
            return checked.problem
        now = time.time()
        if not now < checked.expires_at <= now + MAX_VAPID_LIFETIME:
            return "VAPID exp must lie within the next 24 hours"
        return None


def _verify_vapid(header: str, origin: str) -> _VapidCheck:
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "vapid":
        return _VapidCheck("Authorization scheme must be vapid", 0)
    values: dict[str, str] = {}
    # py_vapid writes "t=<jwt>,k=<key>" without a space; others put one after the comma.
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            values[name.strip().lower()] = value.strip()
    token, key = values.get("t"), values.get("k")
    if not token or not key:
        return _VapidCheck("VAPID header needs t= and k=", 0)
    try:
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["ES256"],
            audience=origin,
            options={"require": ["aud", "exp", "sub"]},
        )
    except (ValueError, jwt.InvalidTokenError) as exc:
        return _VapidCheck(f"invalid VAPID token: {exc}", 0)
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        return _VapidCheck("VAPID sub must be a contact URI", 0)
    return _VapidCheck(None, float(claims["exp"]))
