"""The APNs JSON body: `aps` for the system, custom data beside it (APNs ignores custom keys inside aps)."""

from typing import Any

MAX_PAYLOAD_BYTES = 4096


def build_apns_payload(notification: dict[str, Any], title: str | None, body: str | None) -> dict[str, Any]:
    alert = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
    aps: dict[str, Any] = {}
    if alert:
        aps["alert"] = alert
    else:
        # Data only: a background push that wakes the app without showing anything.
        aps["content-available"] = 1
    if notification.get("collapse_key"):
        aps["thread-id"] = notification["collapse_key"]
    return {"aps": aps, **(notification.get("data") or {})}


def push_type(payload: dict[str, Any]) -> str:
    return "alert" if "alert" in payload.get("aps", {}) else "background"


def apns_priority(priority: str, payload: dict[str, Any]) -> int:
    """10 sends now; background pushes must use 5 (APNs rejects 10 for them)."""
    return 10 if priority == "high" and push_type(payload) == "alert" else 5
