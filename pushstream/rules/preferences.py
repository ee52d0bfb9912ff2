"""A user's own rules: opt-outs, quiet hours and daily frequency caps."""

import datetime as dt
import zoneinfo

from pushstream.models.values import Preferences, UserState

SENT_MEMORY_SECONDS = 7 * 24 * 3600  # how long a notification id is remembered per user for dedup
SENT_MEMORY_MAX = 1000
COUNT_DAYS_KEPT = 2


def opted_in(prefs: Preferences | None, channel: str, category: str | None) -> bool:
    """Users are opted in unless they said otherwise; transactional messages honour category opt-outs only."""
    if not prefs:
        return True
    if channel != "transactional" and prefs.get("channels", {}).get(channel) is False:
        return False
    return not (category is not None and prefs.get("categories", {}).get(category) is False)


def user_zone(prefs: Preferences | None, device_tz: str | None, default: dt.tzinfo = dt.UTC) -> dt.tzinfo:
    """The zone of the user's quiet hours and daily caps: the preferences' zone, else the device's, else the app's
    ``default_timezone`` (``default``, UTC when the app names none). A name that is no zone is passed over."""
    for name in ((prefs or {}).get("timezone"), device_tz):
        if name:
            try:
                return zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
                pass
    return default


def _hhmm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def quiet_hours_end(prefs: Preferences | None, zone: dt.tzinfo, now: dt.datetime) -> dt.datetime | None:
    """When the user's quiet hours end, if ``now`` lies inside them; else None. Windows may wrap midnight."""
    quiet = (prefs or {}).get("quiet_hours")
    if not quiet:
        return None
    start, end = _hhmm(quiet["start"]), _hhmm(quiet["end"])
    if start == end:
        return None
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_day = local.date() if t < end else local.date() + dt.timedelta(days=1)
    # Built from wall-clock parts so a DST change between now and the end is resolved by the zone.
    until = dt.datetime.combine(end_day, end, tzinfo=zone).astimezone(dt.UTC)
    if until <= now:
        # The end falls in the hour repeated when clocks go back and ``now`` is already in its second pass:
        # the end that lies ahead is the second occurrence of that wall-clock time.
        until = dt.datetime.combine(end_day, end, tzinfo=zone).replace(fold=1).astimezone(dt.UTC)
    return until


def day_bucket(zone: dt.tzinfo, now: dt.datetime) -> str:
    return now.astimezone(zone).date().isoformat()


def cap_exceeded(prefs: Preferences | None, state: UserState | None, channel: str, day: str) -> bool:
    limit = (prefs or {}).get("max_per_day", {}).get(channel)
    if limit is None:
        return False
    count = ((state or {}).get("counts", {}).get(day) or {}).get(channel, 0)
    return bool(count >= limit)


def already_sent(state: UserState | None, notification_id: str) -> bool:
    return notification_id in (state or {}).get("sent", {})


def sent_origin(state: UserState | None, notification_id: str) -> str | None:
    """Which request record (topic:partition:offset) first reached this user with the notification id."""
    return (state or {}).get("origins", {}).get(notification_id)


def record_sent(
    state: UserState | None, notification_id: str, channel: str | None, day: str | None, now: float,
    origin: str | None = None,
) -> UserState:
    """Remember that a notification reached this user (for dedup) and count it against the day's cap.

    ``channel`` is None when nothing was delivered (every device suppressed): the id is still remembered so a
    replay cannot deliver it later, but it does not count against the cap.
    """
    state = state or {}
    sent = {nid: ts for nid, ts in state.get("sent", {}).items() if now - ts < SENT_MEMORY_SECONDS}
    sent[notification_id] = now
    if len(sent) > SENT_MEMORY_MAX:
        sent = dict(sorted(sent.items(), key=lambda item: item[1])[-SENT_MEMORY_MAX:])
    counts = {d: dict(c) for d, c in state.get("counts", {}).items()}
    if channel is not None and day is not None:
        counts.setdefault(day, {})
        counts[day][channel] = counts[day].get(channel, 0) + 1
    counts = dict(sorted(counts.items())[-COUNT_DAYS_KEPT:])
    origins = {nid: o for nid, o in state.get("origins", {}).items() if nid in sent}
    if origin is not None:
        origins[notification_id] = origin
    return {"sent": sent, "counts": counts, "origins": origins}


def merge_memory(
    current: UserState | None, base: UserState | None, new: UserState | None
) -> UserState | None:
    """Three-way merge of a user's memory: ``new`` was computed from ``base``, and the table now holds
    ``current`` (another router lane may have written the user while this one awaited its outbox).

    The result is ``current`` with this writer's changes on top: the ids it remembered, its count increments
    and origins added, the ids it aged out removed, so neither writer's dedup or cap memory is lost.
    """
    if current == base:  # nobody wrote in between: the common case
        return new
    if new is None:
        return current
    current, base = current or {}, base or {}
    base_sent, new_sent = base.get("sent", {}), new.get("sent", {})
    dropped = set(base_sent) - set(new_sent)
    sent = {nid: ts for nid, ts in current.get("sent", {}).items() if nid not in dropped}
    for nid, ts in new_sent.items():
        sent[nid] = max(ts, sent.get(nid, ts))
    if len(sent) > SENT_MEMORY_MAX:
        sent = dict(sorted(sent.items(), key=lambda item: item[1])[-SENT_MEMORY_MAX:])
    counts: dict[str, dict[str, int]] = {}
    cur_counts, base_counts, new_counts = current.get("counts", {}), base.get("counts", {}), new.get("counts", {})
    for day in sorted({*cur_counts, *new_counts}):
        cur_day, base_day, new_day = cur_counts.get(day) or {}, base_counts.get(day) or {}, new_counts.get(day) or {}
        merged = {ch: cur_day.get(ch, 0) + new_day.get(ch, 0) - base_day.get(ch, 0) for ch in {*cur_day, *new_day}}
        merged = {ch: n for ch, n in sorted(merged.items()) if n > 0}
        if merged or day in cur_counts:
            counts[day] = merged
    counts = dict(sorted(counts.items())[-COUNT_DAYS_KEPT:])
    base_origins = base.get("origins", {})
    origins = {nid: o for nid, o in current.get("origins", {}).items() if nid in sent}
    origins.update({nid: o for nid, o in new.get("origins", {}).items()
                    if nid in sent and base_origins.get(nid) != o})
    return {"sent": sent, "counts": counts, "origins": origins}
