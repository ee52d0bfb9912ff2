"""Sends at the user's local time (`send_at_local`, contract §1): whose zone, and when that wall-clock time is.

Pure: the router groups one step's users by zone (`user_zone_name`), asks `local_due` once per zone, and
schedules one intent per (partition, step, zone) instead of one entry per user.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

from pushstream.models.base import parse_hhmm as parse_hhmm
from pushstream.models.values import Device
from pushstream.models.vocabulary import DEFAULT_IF_PASSED as DEFAULT_IF_PASSED
from pushstream.models.vocabulary import IF_PASSED as IF_PASSED
from pushstream.rules.targeting import segment_matches

UTC_NAME = "UTC"
PASSED_REASON = "local_time_passed"  # the `suppressed` reason of users skipped by "if_passed": "skip"


def zone_of(name: str | None) -> dt.tzinfo | None:
    """The zone of an IANA name, or None when the name is missing or unknown."""
    if not name or not isinstance(name, str):
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return None


def user_zone_name(prefs: Mapping[str, Any] | None, devices: Iterable[Mapping[str, Any]],
                   default: str | None) -> str:
    """The zone a user's local time is read in: the preferences' timezone, else the first device's (in device id
    order) that names a known one, else the app's default_timezone, else UTC. Unknown names are passed over."""
    candidates = [(prefs or {}).get("timezone")]
    candidates += [d.get("timezone") for d in sorted(devices, key=lambda d: str(d.get("device_id", "")))]
    candidates.append(default)
    for name in candidates:
        if zone_of(name) is not None:
            return str(name)
    return UTC_NAME


def wall_clock(zone: dt.tzinfo, day: dt.date, at: dt.time) -> dt.datetime:
    """The instant (UTC) the clocks of ``zone`` show ``at`` on ``day``.

    A time that occurs twice (clocks go back) is its first occurrence. A time that does not exist (clocks
    jump forward over it) is the first valid instant after the gap: the moment the clocks jump.
    """
    local = dt.datetime.combine(day, at, tzinfo=zone)
    first = local.replace(fold=0).astimezone(dt.UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return first
    # In a gap: fold=1 reads it with the offset after the jump (an instant before the gap), fold=0 with the
    # offset before it (an instant after the gap). The jump lies between: found by bisection.
    low, high = local.replace(fold=1).astimezone(dt.UTC), first
    if low > high:
        low, high = high, low
    before = low.astimezone(zone).utcoffset()
    while (high - low) > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(second=0, microsecond=0)  # zones change offset on whole minutes


def local_due(zone: dt.tzinfo, at: dt.time, on: dt.date | None, now: dt.datetime,
              if_passed: str = DEFAULT_IF_PASSED) -> dt.datetime | None:
    """When a user in ``zone`` gets a notification for local time ``at`` (on ``on``, else today), given ``now``.

    The day is ``on`` if given, else the user's today; a day before the user's today is today. When that
    day's time has already passed: ``"tomorrow"`` gives the next day's, ``"skip"`` gives None (not sent).
    """
    if if_passed not in IF_PASSED:
        raise ValueError(f"if_passed must be one of {', '.join(IF_PASSED)}")
    today = now.astimezone(zone).date()
    day = today if on is None or on < today else on
    if on is not None and on < today and if_passed == "skip":
        return None
    due = wall_clock(zone, day, at)
    if due > now:
        return due
    if if_passed == "skip":
        return None
    return wall_clock(zone, day + dt.timedelta(days=1), at)


def pending_local_time(notification: Mapping[str, Any]) -> bool:
    """Whether this notification still waits to be split by zone (a fired per-zone intent carries its zone)."""
    return bool(notification.get("send_at_local")) and "local_zone" not in notification


def targeted_devices(notification: Mapping[str, Any], devices: Mapping[str, Device]) -> list[tuple[str, str]]:
    """(device_id, platform) of the user's devices the notification's target reaches (active, matching
    segment): the ones told `suppressed`/`local_time_passed` when the user is skipped."""
    segment = notification["target"].get("segment")
    return [(device_id, str(d.get("platform"))) for device_id, d in devices.items()
            if d.get("active", True) and (segment is None or segment_matches(d, segment))]


def split_by_zone(notification: Mapping[str, Any],
                  users: Iterable[tuple[str, Mapping[str, Device], Mapping[str, Any] | None]],
                  now: dt.datetime, default_zone: str | None
                  ) -> tuple[dict[str, tuple[dt.datetime, list[str]]], list[tuple[str, str, str]]]:
    """One step's users (user_id, devices, preferences) → {zone name: (due, user ids)} and the
    (user_id, device_id, platform) of the users skipped because their time has passed (``if_passed: skip``).

    Users without devices are left out. ``due`` is computed once per zone, which is what keeps a
    million-user campaign at one schedule entry per (partition, step, zone)."""
    at = parse_hhmm(notification["send_at_local"])
    on = dt.date.fromisoformat(notification["send_on"]) if notification.get("send_on") else None
    if_passed = notification.get("if_passed") or DEFAULT_IF_PASSED
    dues: dict[str, dt.datetime | None] = {}
    groups: dict[str, tuple[dt.datetime, list[str]]] = {}
    skipped: list[tuple[str, str, str]] = []
    for user_id, devices, prefs in users:
        if not devices:
            continue
        name = user_zone_name(prefs, devices.values(), default_zone)
        if name not in dues:
            zone = zone_of(name) or dt.UTC
            dues[name] = local_due(zone, at, on, now, if_passed)
        due = dues[name]
        if due is None:
            skipped.extend((user_id, device_id, platform)
                           for device_id, platform in targeted_devices(notification, devices))
            continue
        groups.setdefault(name, (due, []))[1].append(user_id)
    return groups, skipped
