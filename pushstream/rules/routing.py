"""The per-device decision, in the contract's order.

device active → app matches → segment matches → opted in → frequency cap → quiet hours → TTL,
with duplicates (a notification id already handled for this user) stopped before any of them.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pushstream.models.values import Device, Preferences, UserState
from pushstream.rules import preferences
from pushstream.rules.targeting import is_test_device, segment_matches

# What the router does with one device: send to it, report it suppressed or deferred, or leave it untargeted.
RouteAction = Literal["deliver", "suppressed", "deferred", "skip"]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """``deliver``, ``suppressed`` (reason names the rule), ``deferred`` (until) or ``skip`` (not targeted)."""

    action: RouteAction
    reason: str | None = None
    until: dt.datetime | None = None


DELIVER = RouteDecision("deliver")
SKIP = RouteDecision("skip")


def decide(
    device: Device,
    app_id: str,
    notification: dict[str, Any],
    prefs: Preferences | None,
    state: UserState | None,
    now: dt.datetime,
    default_zone: dt.tzinfo = dt.UTC,
) -> RouteDecision:
    """What happens to one notification on one device of one user."""
    if preferences.already_sent(state, notification["id"]):
        return RouteDecision("suppressed", "duplicate")
    if not device.get("active", True):
        # Inactive devices are reported only when the user was addressed directly; a broadcast skips them.
        return RouteDecision("suppressed", "inactive") if "user_ids" in notification["target"] else SKIP
    if notification["app_id"] != app_id:
        return SKIP
    segment = notification["target"].get("segment")
    if segment is not None and not segment_matches(device, segment):
        return SKIP
    if "test_devices" in notification["target"] and not is_test_device(device):
        return SKIP
    channel = notification["channel"]
    if not preferences.opted_in(prefs, channel, notification.get("category")):
        return RouteDecision("suppressed", "opt_out")
    zone = preferences.user_zone(prefs, device.get("timezone"), default_zone)
    if preferences.cap_exceeded(prefs, state, channel, preferences.day_bucket(zone, now)):
        return RouteDecision("suppressed", "frequency_cap")
    if channel != "transactional":
        until = preferences.quiet_hours_end(prefs, zone, now)
        if until is not None:
            return RouteDecision("deferred", "quiet_hours", until)
    ttl = notification.get("ttl")
    # ttl 0 is "now or never": the first attempt is always made (with a zero lifetime at the provider).
    if ttl and now.timestamp() > notification["received_at"] + ttl:
        return RouteDecision("suppressed", "expired")
    return DELIVER
