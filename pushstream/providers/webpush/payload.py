"""The Web Push plaintext: the JSON the service worker receives after decryption."""

import base64
import hashlib
import re
from typing import Any

# RFC 8291 §4: one 4096-byte record minus header, padding delimiter and AEAD tag.
MAX_PLAINTEXT_BYTES = 3993
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")  # RFC 8030 §5.4: ≤ 32 chars, URL-safe base64 alphabet


def topic_for(collapse_key: str) -> str:
    """The ``Topic`` header for a collapse key: itself when valid, else a stable 32-char digest of it."""
    if _TOPIC.fullmatch(collapse_key):
        return collapse_key
    digest = hashlib.sha256(collapse_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:32]


def build_webpush_payload(notification: dict[str, Any], title: str | None, body: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": notification["id"]}
    if title is not None:
        payload["title"] = title
    if body is not None:
        payload["body"] = body
    if notification.get("data"):
        payload["data"] = notification["data"]
    if notification.get("collapse_key"):
        payload["tag"] = notification["collapse_key"]
    return payload
