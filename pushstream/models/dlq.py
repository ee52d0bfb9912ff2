"""`pushstream.dlq`: every record that could not be processed or delivered, with the reason and its origin.

Every dead letter is built by `dead_letter` (ingest, planner, every guarded agent, router, senders), which
redacts device addresses from the value and the detail with the one rule, `pushstream.models.redact`.
"""

import base64
from typing import Any, Optional

import faust
import orjson

from pushstream.models.base import iso, utcnow
from pushstream.models.redact import redact_bytes, redact_text


class DeadLetter(faust.Record, include_metadata=False):
    reason: str
    detail: str
    topic: str
    partition: Optional[int]
    offset: Optional[int]
    at: str
    key: Optional[str] = None
    # The original value as UTF-8 text when it is text, else base64 (value_encoding says which).
    value: Optional[str] = None
    value_encoding: str = "utf-8"


def dead_letter(
    reason: str, detail: str, *, topic: str, partition: Optional[int], offset: Optional[int],
    key: Optional[bytes], value: Optional[bytes],
) -> DeadLetter:
    """Build a dead letter that keeps the original bytes, device addresses redacted (nothing else changes)."""
    text: Optional[str]
    encoding = "utf-8"
    if value is not None:
        value = redact_bytes(value)
    if value is None:
        text = None
    else:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(value).decode("ascii"), "base64"
    return DeadLetter(
        reason=reason,
        detail=redact_text(detail),
        topic=topic,
        partition=partition,
        offset=offset,
        at=iso(utcnow()),
        key=key.decode("utf-8", "replace") if key is not None else None,
        value=text,
        value_encoding=encoding,
    )


def undeliverable(
    reason: str, *, topic: str, partition: Optional[int], offset: Optional[int], notification: dict[str, Any],
    user_id: str, device_id: str, device: dict[str, Any], origin: Optional[str],
) -> DeadLetter:
    """The dead letter of one device the router could not hand to a sender (platform_not_configured,
    payload_too_large): where the intent was read, which notification and device, the address as its
    fingerprint only."""
    value = {"notification_id": notification.get("id"), "app_id": notification.get("app_id"),
             "user_id": user_id, "device_id": device_id, "platform": device.get("platform"),
             "token_fingerprint": device.get("fingerprint"), "origin": origin}
    return dead_letter(reason, f"{device.get('platform')} device {device_id} of user {user_id}", topic=topic,
                       partition=partition, offset=offset, key=user_id.encode("utf-8"), value=orjson.dumps(value))
