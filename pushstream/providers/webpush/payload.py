"""The Web Push plaintext: the JSON the service worker receives after decryption."""

from typing import Any

# RFC 8291 §4: one 4096-byte record minus header, padding delimiter and AEAD tag.
MAX_PLAINTEXT_BYTES = 3993


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
