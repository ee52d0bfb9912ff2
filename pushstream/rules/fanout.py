"""Fan one notification out over one user's devices: who gets what, and which outcomes to report."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushstream.models.status import Status
from pushstream.models.values import DeliveryItem, Devices, Preferences, UserState
from pushstream.models.vocabulary import Platform
from pushstream.rules import cancel, preferences
from pushstream.rules.routing import decide

# Bound once: an enum member lookup per device costs more than the string compare it replaces.
_SUPPRESSED, _DEFERRED, _DEAD_LETTERED = Status.SUPPRESSED, Status.DEFERRED, Status.DEAD_LETTERED
_WEBPUSH = Platform.WEBPUSH

# (platform, locale) → the rendered payload, or a reason it cannot be sent (e.g. payload_too_large).
Renderer = Callable[[str, "str | None"], "dict[str, Any] | str"]


@dataclass
class UserFanOut:
    deliveries: dict[str, list[DeliveryItem]] = field(default_factory=dict)
    # (device_id, platform, status, reason)
    outcomes: list[tuple[str, str, Status, str | None]] = field(default_factory=list)
    state: UserState | None = None  # the user's new delivery memory, None when unchanged
    # Devices deferred by quiet hours, and when to try them again.
    deferred: list[str] = field(default_factory=list)
    deferred_until: dt.datetime | None = None


def fan_out_user(
    notification: dict[str, Any],
    app_id: str,
    user_id: str,
    devices: Devices,
    prefs: Preferences | None,
    state: UserState | None,
    now: dt.datetime,
    configured: Callable[[str], bool],
    render: Renderer,
    origin: str | None = None,
    only_devices: list[str] | None = None,
    default_zone: dt.tzinfo = dt.UTC,
    cancelled: bool = False,
) -> UserFanOut:
    """``origin`` names the request record being processed. When the user already got the notification from
    that very record, this is a replay after a crash: it produces nothing, not even duplicate statuses.

    ``only_devices`` is a re-delivery after quiet hours: just those devices, and the user's memory of the
    notification (written when the other devices got it) does not count as a duplicate for them.

    ``cancelled``: the notification was cancelled (``rules.cancel.overrule`` decides each device).
    """
    result = UserFanOut()
    if origin is not None and preferences.sent_origin(state, notification["id"]) == origin:
        return result
    decide_state = state
    if only_devices is not None:
        devices = {d: devices[d] for d in only_devices if d in devices}
        sent = (state or {}).get("sent", {})
        decide_state = {**(state or {}), "sent": {k: v for k, v in sent.items() if k != notification["id"]}}
    delivered_zone: dt.tzinfo | None = None
    duplicate = False
    for device_id, device in devices.items():
        platform = device["platform"]
        decision = decide(device, app_id, notification, prefs, decide_state, now, default_zone)
        if cancelled:
            decision = cancel.overrule(decision)
        if decision.action == "skip":
            continue
        if decision.action == "suppressed":
            duplicate = duplicate or decision.reason == "duplicate"
            result.outcomes.append((device_id, platform, _SUPPRESSED, decision.reason))
            continue
        if decision.action == "deferred":
            result.outcomes.append((device_id, platform, _DEFERRED, decision.reason))
            result.deferred.append(device_id)
            result.deferred_until = max(filter(None, (result.deferred_until, decision.until)))
            continue
        if not configured(platform):
            result.outcomes.append((device_id, platform, _DEAD_LETTERED, "platform_not_configured"))
            continue
        payload = render(platform, device.get("locale"))
        if isinstance(payload, str):
            result.outcomes.append((device_id, platform, _DEAD_LETTERED, payload))
            continue
        item: DeliveryItem = {"user_id": user_id, "device_id": device_id, "payload": payload}
        if platform == _WEBPUSH:
            item["subscription"] = device["subscription"]
        else:
            item["token"] = device["token"]
        result.deliveries.setdefault(platform, []).append(item)
        delivered_zone = delivered_zone or preferences.user_zone(prefs, device.get("timezone"), default_zone)
    final = any(status != _DEFERRED for _, _, status, _ in result.outcomes)
    if not duplicate and (final or result.deliveries):
        day = preferences.day_bucket(delivered_zone, now) if delivered_zone else None
        channel = notification["channel"] if result.deliveries else None
        result.state = preferences.record_sent(state, notification["id"], channel, day, now.timestamp(), origin)
    return result
