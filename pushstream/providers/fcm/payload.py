"""The FCM v1 `message` without its target: the sender adds `token` per device."""

from typing import Any

import orjson

from pushstream.providers.webpush.payload import topic_for

MAX_MESSAGE_BYTES = 4096


def stringify_data(data: dict[str, Any] | None) -> dict[str, str]:
    """FCM data values must be strings; anything else is sent as its JSON text."""
    return {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in (data or {}).items()}


def build_fcm_message(notification: dict[str, Any], title: str | None, body: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {}
    texts = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
    if texts:
        message["notification"] = texts
    data = stringify_data(notification.get("data"))
    if data:
        message["data"] = data
    high = notification.get("priority") == "high"
    android: dict[str, Any] = {"priority": "HIGH" if high else "NORMAL"}
    apns_headers = {"apns-priority": "10" if high and texts else "5"}
    webpush_headers = {"Urgency": "high" if high else "normal"}
    ttl = notification.get("ttl")
    if ttl is not None:
        android["ttl"] = f"{ttl}s"
        webpush_headers["TTL"] = str(ttl)
        if ttl == 0:
            apns_headers["apns-expiration"] = "0"  # now or never on iOS devices too
    collapse = notification.get("collapse_key")
    if collapse:
        android["collapse_key"] = collapse
        apns_headers["apns-collapse-id"] = collapse
        webpush_headers["Topic"] = topic_for(collapse)
    message["android"] = android
    message["apns"] = {"headers": apns_headers, "payload": {"aps": {} if texts else {"content-available": 1}}}
    message["webpush"] = {"headers": webpush_headers}
    return message
