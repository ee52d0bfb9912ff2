"""Cancel: what a cancelled notification still does to a device, and how long a cancel is remembered.

A cancel reaches every user partition (the planner fans it out like a broadcast) and is remembered there in the
`cancelled` table, keyed by app/notification id. The router consults that memory at every routing step, and a
scheduled or deferred intent is routed when it fires, so all three stages meet the same check.
"""

from __future__ import annotations

from typing import Any

from pushstream.rules.routing import SKIP, RouteDecision

CANCELLED = RouteDecision("suppressed", "cancelled")


def cancel_key(app_id: str, notification_id: str) -> str:
    """The `cancelled` table's key (UTF-8, on every user partition)."""
    return f"{app_id}/{notification_id}"


def cancel_entry(at: float) -> dict[str, Any]:
    return {"at": at}


def is_cancelled(entry: dict[str, Any] | None) -> bool:
    """Whether the `cancelled` table's entry of a notification stops it. A cancel is final and never expires:
    a notification whose cancel arrived first (another partition, or a producer that published the two out of
    order), a replay, or a `send_at` weeks ahead is suppressed whenever it is routed. The memory is one small
    entry per cancelled notification and partition (`at` says when it was cancelled)."""
    return entry is not None


def overrule(decision: RouteDecision) -> RouteDecision:
    """The decision for a device when its notification is cancelled.

    A device that would be sent to or deferred is suppressed as ``cancelled``. A duplicate (the device already
    had its outcome for this notification, e.g. it was delivered) gets nothing: cancelling it changes nothing
    and adds no status. Every other suppression keeps its own reason (the device would not have got it anyway),
    and a device the notification does not target stays untargeted."""
    if decision.action in ("deliver", "deferred"):
        return CANCELLED
    if decision.action == "suppressed" and decision.reason == "duplicate":
        return SKIP
    return decision
