"""The one redaction rule: what of a device address may be written anywhere but towards its provider.

A raw APNs/FCM token, a Web Push endpoint's path and a subscription's keys (``p256dh``, ``auth``) never go
into a DLQ record, a status record or a log line. Every path that writes a dead letter goes through
`pushstream.models.dlq.dead_letter`, which applies `redact_bytes` to the value and `redact_text` to the
detail; logs and status records name an address only by its fingerprint (`models.identity.token_fingerprint`).

- a string ``token`` becomes ``"redacted:<fingerprint>"`` (the fingerprint status records and views show,
  when the platform is known from the enclosing records, else of the token alone);
- a ``subscription`` keeps only its endpoint's origin and the fingerprint: ``{"endpoint":
  "https://push.example", "redacted": "<fingerprint>"}``;
- anything else keyed ``p256dh`` or ``auth`` is dropped to ``"redacted"``.
Redacting twice gives the same result as once.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import orjson

from pushstream.models.identity import token_fingerprint

PREFIX = "redacted"
_SECRET_KEYS = ("p256dh", "auth")
# The same fields in text that is not JSON (a malformed record, an exception message). A quoted value left
# unterminated (a record cut short just after an address) runs to the end of the text and is redacted whole.
_TEXT_TOKEN = re.compile(
    r'(["\']?(?:token|p256dh|auth)["\']?\s*[:=]\s*)("(?:[^"\\]|\\.)*(?:"|\\?\Z)|\'[^\']*(?:\'|\Z)|[^\s,;}\]\'"]+)')
_TEXT_ENDPOINT = re.compile(r'(["\']?endpoint["\']?\s*[:=]\s*["\']?)([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s"\']*)([^\s"\',;}]*)')
# Address-shaped runs anywhere in text: an APNs token (64+ hex digits) or an FCM registration token (100+
# characters of its alphabet). Ids pushstream itself prints (uuids, notification ids) are far shorter.
_TEXT_OPAQUE = re.compile(r'(?<![A-Za-z0-9_:-])(?:[0-9a-fA-F]{64,}|[A-Za-z0-9_:-]{100,})(?![A-Za-z0-9_:-])')


def _fingerprint(platform: str | None, address: str) -> str:
    return token_fingerprint(platform or "?", address)


def _origin(endpoint: Any) -> str | None:
    if not isinstance(endpoint, str):
        return None
    try:
        url = urlsplit(endpoint)
    except ValueError:
        return None
    return f"{url.scheme}://{url.netloc}" if url.scheme and url.netloc else None


def redact(value: Any, platform: str | None = None) -> Any:
    """A copy of a JSON value with every device address redacted, however deep (see the module doc)."""
    if isinstance(value, list):
        return [redact(v, platform) for v in value]
    if not isinstance(value, dict):
        return value
    own = value.get("platform")
    platform = own if isinstance(own, str) else platform
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if key == "token" and isinstance(item, str):
            out[key] = item if item.startswith(f"{PREFIX}:") else f"{PREFIX}:{_fingerprint(platform, item)}"
        elif key == "subscription" and item is not None:
            out[key] = _redact_subscription(item, platform)
        elif key in _SECRET_KEYS:
            out[key] = PREFIX
        else:
            out[key] = redact(item, platform)
    return out


def _redact_subscription(subscription: Any, platform: str | None) -> Any:
    if isinstance(subscription, dict) and set(subscription) <= {"endpoint", PREFIX} and PREFIX in subscription:
        return subscription  # already redacted
    endpoint = subscription.get("endpoint") if isinstance(subscription, dict) else None
    redacted: dict[str, Any] = {"endpoint": _origin(endpoint)}
    if isinstance(endpoint, str):
        redacted[PREFIX] = _fingerprint(platform or "webpush", endpoint)
    else:
        redacted[PREFIX] = PREFIX
    return redacted


def redact_text(text: str) -> str:
    """Free text (a malformed record, an exception message): token/p256dh/auth values and endpoint paths
    that appear as fields, and address-shaped runs anywhere, are replaced."""
    text = _TEXT_OPAQUE.sub(PREFIX, text)
    text = _TEXT_TOKEN.sub(lambda m: m.group(1) + (m.group(2) if m.group(2).strip("\"'").startswith(
        f"{PREFIX}:") else f'"{PREFIX}"'), text)
    return _TEXT_ENDPOINT.sub(lambda m: m.group(1) + m.group(2) + ("/..." if m.group(3) else ""), text)


def redact_bytes(raw: bytes) -> bytes:
    """A record's value for the DLQ: JSON is redacted structurally; anything else as text, byte for byte
    outside the redacted fields (bytes that are not UTF-8 are kept through latin-1)."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        redacted = redact(parsed)
        return raw if redacted == parsed else orjson.dumps(redacted)  # unchanged: the original bytes
    try:
        return redact_text(raw.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        return redact_text(raw.decode("latin-1")).encode("latin-1")
