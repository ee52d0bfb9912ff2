"""Audit records (`pushstream.audit`, contract §2): who asked for which send, from where, and when.

Pure: the HTTP handler and the planner pass plain values in. Nothing secret goes into a record: an API key only
as its fingerprint, a target only as a summary (a count of user ids, never the ids), and free text (the user
agent) redacted and bounded.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

# The Kafka header an HTTP-accepted request carries on `pushstream.notifications`: its request id. The HTTP
# handler writes that request's audit record itself; the planner writes one (via "kafka") for every record
# without the header.
REQUEST_ID_HEADER = "pushstream-request-id"
MAX_USER_AGENT = 256
_BEARER = re.compile(r"(?i)bearer\s+\S+")


def key_fingerprint(api_key: str) -> str:
    """A stable, non-reversible id of an API key: the first 16 hex digits of its SHA-256."""
    return "sha256:" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]


def target_summary(target: dict[str, Any]) -> dict[str, Any]:
    """``{"user_ids": 2}``, ``{"all": true}``, ``{"segment": {...}}``, ``{"test_devices": true}``."""
    if "user_ids" in target:
        return {"user_ids": len(target["user_ids"])}
    if "segment" in target:
        return {"segment": dict(target["segment"])}
    return {kind: True for kind in target}


def clean_user_agent(user_agent: str | None, secrets: tuple[str, ...] = ()) -> str | None:
    """A user agent as recorded: bounded, with any bearer credential or known secret cut out."""
    if not user_agent:
        return None
    text = _BEARER.sub("Bearer [redacted]", user_agent)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:MAX_USER_AGENT]


def audit_record(*, notification_id: str, app_id: str, target: dict[str, Any], at: str, via: str,
                 key_id: str | None = None, remote: str | None = None, user_agent: str | None = None,
                 request_id: str | None = None) -> dict[str, Any]:
    """The audit record of one accepted send request (``via``: "http" or "kafka")."""
    record: dict[str, Any] = {"notification_id": notification_id, "app_id": app_id, "via": via}
    if via == "http":
        record.update(key_id=key_id, remote=remote, user_agent=user_agent, request_id=request_id)
    record.update(target=target_summary(target), at=at)
    return record


def request_id_of(headers: Any) -> str | None:
    """The request id header of a Kafka record (Faust gives a list of (name, bytes) pairs or a mapping)."""
    if not headers:
        return None
    pairs = headers.items() if hasattr(headers, "items") else headers
    for name, value in pairs:
        if name == REQUEST_ID_HEADER:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None
