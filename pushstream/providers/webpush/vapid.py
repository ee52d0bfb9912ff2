"""VAPID (RFC 8292): the ``Authorization: vapid t=<JWT>,k=<key>`` header, ES256-signed with ``cryptography``.

One header per push-service origin (``aud``), signed once and reused until an hour before its ``exp``
(12 h; the RFC allows at most 24 h): signing costs ~30 µs, which would otherwise be paid on every message.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# RFC 8292 §2.1: sub SHOULD be a mailto: or https: contact URI; anything else is a configuration mistake.
_SUBJECT = re.compile(r"mailto:[^@\s]+@[^@\s]+|https://[^/\s?#]+(/\S*)?")
_JWT_HEADER = b'{"typ":"JWT","alg":"ES256"}'


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def origin_of(endpoint: str) -> str:
    """``scheme://host[:port]`` of a push endpoint: the VAPID ``aud`` for it."""
    url = urlsplit(endpoint)
    return f"{url.scheme}://{url.netloc}"


def load_vapid_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The VAPID signing key from a PEM (PKCS#8 or SEC1) file, or a base64url DER or raw 32-byte scalar file.

    A missing file is an error (never a freshly generated key: subscriptions are bound to this key).
    """
    data = Path(path).read_bytes()
    key: object
    if b"-----BEGIN" in data:
        key = serialization.load_pem_private_key(data, password=None)
    else:
        text = data.decode("ascii").strip()
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(raw) == 32:
            key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
        else:
            key = serialization.load_der_private_key(raw, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: not a P-256 private key")
    return key


def check_subject(subject: str) -> None:
    """ValueError unless ``subject`` is a ``mailto:`` or ``https:`` contact URI (RFC 8292 §2.1)."""
    if not _SUBJECT.fullmatch(subject):
        raise ValueError(f"VAPID subject must be a mailto: or https: URI, not {subject!r}")


def vapid_header(key: ec.EllipticCurvePrivateKey, public_b64: str, aud: str, exp: int, sub: str) -> str:
    """The ``Authorization`` value: an ES256 JWT (RFC 7515 compact form, raw r‖s signature) and the key."""
    claims = orjson.dumps({"aud": aud, "exp": exp, "sub": sub})
    signing_input = f"{b64url(_JWT_HEADER)}.{b64url(claims)}".encode("ascii")
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"vapid t={signing_input.decode('ascii')}.{b64url(signature)},k={public_b64}"


@dataclass(slots=True)
class _SignedHeader:
    header: str
    expires_at: float


class VapidSigner:
    """VAPID ``Authorization`` headers, one per push-service origin, re-signed an hour before expiry."""

    LIFETIME = 12 * 3600  # exp = now + 12 h (RFC 8292: at most 24 h)
    RENEW_BEFORE = 3600

    def __init__(
        self, key: ec.EllipticCurvePrivateKey, subject: str, clock: Callable[[], float] = time.time
    ) -> None:
        check_subject(subject)
        self._key = key
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self._public_b64 = b64url(self.public_key)
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
            header = vapid_header(self._key, self._public_b64, origin, expires_at, self._subject)
            entry = self._cache[origin] = _SignedHeader(header, expires_at)
            self.signed += 1
        return entry.header

    def invalidate(self, origin: str, rejected: str) -> None:
        """Forget ``origin``'s header if it is the one the service rejected (others may have renewed it)."""
        entry = self._cache.get(origin)
        if entry is not None and entry.header == rejected:
            del self._cache[origin]
