"""Local-time sends: the user's zone, the due time across zones and DST transitions, the per-zone split."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from pushstream.models.values import Devices, Preferences
from pushstream.rules.localtime import (
    local_due,
    parse_hhmm,
    pending_local_time,
    split_by_zone,
    user_zone_name,
    wall_clock,
)
from tests.unit.factories import device, notification

Z = zoneinfo.ZoneInfo
UTC = dt.UTC


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# (zone, day, local time, the instant expected): ordinary days, gaps (next valid time), repeats (first one).
WALL_CLOCK_CASES = [
    ("Europe/Berlin", dt.date(2026, 12, 2), dt.time(9, 0), utc(2026, 12, 2, 8, 0)),
    ("Europe/Berlin", dt.date(2026, 7, 2), dt.time(9, 0), utc(2026, 7, 2, 7, 0)),
    ("Europe/Berlin", dt.date(2026, 3, 29), dt.time(2, 30), utc(2026, 3, 29, 1, 0)),  # gap 02:00-03:00
    ("Europe/Berlin", dt.date(2026, 3, 29), dt.time(2, 0), utc(2026, 3, 29, 1, 0)),  # gap's first minute
    ("Europe/Berlin", dt.date(2026, 3, 29), dt.time(3, 0), utc(2026, 3, 29, 1, 0)),  # first valid minute
    ("Europe/Berlin", dt.date(2026, 3, 29), dt.time(1, 59), utc(2026, 3, 29, 0, 59)),
    ("Europe/Berlin", dt.date(2026, 10, 25), dt.time(2, 30), utc(2026, 10, 25, 0, 30)),  # repeat: CEST one
    ("Europe/Berlin", dt.date(2026, 10, 25), dt.time(3, 0), utc(2026, 10, 25, 2, 0)),
    ("America/New_York", dt.date(2026, 12, 2), dt.time(9, 0), utc(2026, 12, 2, 14, 0)),
    ("America/New_York", dt.date(2026, 3, 8), dt.time(2, 30), utc(2026, 3, 8, 7, 0)),  # gap 02:00-03:00
    ("America/New_York", dt.date(2026, 11, 1), dt.time(1, 30), utc(2026, 11, 1, 5, 30)),  # repeat: EDT one
    ("America/New_York", dt.date(2026, 11, 1), dt.time(2, 0), utc(2026, 11, 1, 7, 0)),
    # Lord Howe moves its clocks by half an hour: 02:00 → 02:30 in October, 02:00 → 01:30 in April.
    ("Australia/Lord_Howe", dt.date(2026, 10, 4), dt.time(2, 15), utc(2026, 10, 3, 15, 30)),
    ("Australia/Lord_Howe", dt.date(2026, 10, 4), dt.time(2, 30), utc(2026, 10, 3, 15, 30)),
    ("Australia/Lord_Howe", dt.date(2026, 10, 4), dt.time(1, 59), utc(2026, 10, 3, 15, 29)),
    ("Australia/Lord_Howe", dt.date(2026, 4, 5), dt.time(1, 45), utc(2026, 4, 4, 14, 45)),  # repeat: +11 one
    ("Australia/Lord_Howe", dt.date(2026, 4, 5), dt.time(2, 0), utc(2026, 4, 4, 15, 30)),
    ("Australia/Lord_Howe", dt.date(2026, 12, 2), dt.time(9, 0), utc(2026, 12, 1, 22, 0)),  # +11 in summer
    ("Australia/Lord_Howe", dt.date(2026, 7, 2), dt.time(9, 0), utc(2026, 7, 1, 22, 30)),  # +10:30 in winter
    ("Asia/Kolkata", dt.date(2026, 12, 2), dt.time(9, 0), utc(2026, 12, 2, 3, 30)),
    ("Asia/Kolkata", dt.date(2026, 3, 29), dt.time(2, 30), utc(2026, 3, 28, 21, 0)),  # no DST: no gap
    ("UTC", dt.date(2026, 12, 2), dt.time(0, 0), utc(2026, 12, 2, 0, 0)),
]


@pytest.mark.parametrize(("zone", "day", "at", "expected"), WALL_CLOCK_CASES)
def test_wall_clock(zone: str, day: dt.date, at: dt.time, expected: dt.datetime) -> None:
    assert wall_clock(Z(zone), day, at) == expected


def test_every_minute_of_transition_days_lands_on_or_after_its_wall_clock() -> None:
    """Exhaustive over the transition days: a valid time shows that wall clock; a gap time is the jump;
    times are non-decreasing through the day."""
    days = [("Europe/Berlin", dt.date(2026, 3, 29)), ("Europe/Berlin", dt.date(2026, 10, 25)),
            ("America/New_York", dt.date(2026, 3, 8)), ("America/New_York", dt.date(2026, 11, 1)),
            ("Australia/Lord_Howe", dt.date(2026, 10, 4)), ("Australia/Lord_Howe", dt.date(2026, 4, 5)),
            ("Asia/Kolkata", dt.date(2026, 3, 29))]
    for name, day in days:
        zone, last = Z(name), None
        for minute in range(24 * 60):
            at = dt.time(minute // 60, minute % 60)
            due = wall_clock(zone, day, at)
            shown = due.astimezone(zone)
            if shown.time() != at:  # a gap: the first valid instant after it, on the same day
                assert shown.time() > at and shown.date() == day and due.second == 0
                assert (due - dt.timedelta(minutes=1)).astimezone(zone).time() < at
            else:
                assert shown.date() == day and shown.fold == 0  # a repeated time: its first occurrence
            if last is not None:
                assert due >= last
            last = due


NOW = utc(2026, 12, 2, 1, 40)  # 02:40 in Berlin, 20:40 (Dec 1) in New York, 12:40 in Lord Howe, 07:10 Kolkata


@pytest.mark.parametrize(("zone", "at", "on", "policy", "expected"), [
    ("Europe/Berlin", "09:00", None, "tomorrow", utc(2026, 12, 2, 8, 0)),  # later today
    ("Europe/Berlin", "02:00", None, "tomorrow", utc(2026, 12, 3, 1, 0)),  # passed: tomorrow
    ("Europe/Berlin", "02:00", None, "skip", None),  # passed: skipped
    ("Europe/Berlin", "02:40", None, "tomorrow", utc(2026, 12, 3, 1, 40)),  # exactly now counts as passed
    ("Europe/Berlin", "02:41", None, "skip", utc(2026, 12, 2, 1, 41)),
    ("America/New_York", "09:00", None, "tomorrow", utc(2026, 12, 2, 14, 0)),  # still Dec 1 there: 09:00 Dec 2
    ("America/New_York", "21:00", None, "skip", utc(2026, 12, 2, 2, 0)),  # today there is Dec 1
    ("Australia/Lord_Howe", "09:00", None, "tomorrow", utc(2026, 12, 2, 22, 0)),  # passed there: Dec 3
    ("Australia/Lord_Howe", "09:00", None, "skip", None),
    ("Asia/Kolkata", "09:00", None, "skip", utc(2026, 12, 2, 3, 30)),
    ("Europe/Berlin", "09:00", "2026-12-24", "tomorrow", utc(2026, 12, 24, 8, 0)),
    ("Europe/Berlin", "09:00", "2026-12-24", "skip", utc(2026, 12, 24, 8, 0)),
    ("Europe/Berlin", "02:00", "2026-12-02", "tomorrow", utc(2026, 12, 3, 1, 0)),  # the date's time passed
    ("Europe/Berlin", "02:00", "2026-12-02", "skip", None),
    ("Europe/Berlin", "09:00", "2026-11-20", "tomorrow", utc(2026, 12, 2, 8, 0)),  # a past date: from today
    ("Europe/Berlin", "09:00", "2026-11-20", "skip", None),
    ("Europe/Berlin", "02:30", "2027-03-28", "tomorrow", utc(2027, 3, 28, 1, 0)),  # in the spring gap
    ("America/New_York", "01:30", "2026-11-01", "skip", None),  # a past date is skipped
])
def test_local_due(zone: str, at: str, on: str | None, policy: str, expected: dt.datetime | None) -> None:
    day = dt.date.fromisoformat(on) if on else None
    assert local_due(Z(zone), parse_hhmm(at), day, NOW, policy) == expected


def test_tomorrow_across_a_transition_is_resolved_on_that_day() -> None:
    # 02:30 on Mar 28 in Berlin has passed; Mar 29's 02:30 does not exist: the clocks' jump.
    now = utc(2026, 3, 28, 2, 0)
    assert local_due(Z("Europe/Berlin"), dt.time(2, 30), None, now) == utc(2026, 3, 29, 1, 0)
    # A repeated time's first occurrence has passed: tomorrow, never the second occurrence the same day.
    now = utc(2026, 10, 25, 0, 45)  # 02:45 CEST, before the repeat
    assert local_due(Z("Europe/Berlin"), dt.time(2, 30), None, now) == utc(2026, 10, 26, 1, 30)


def test_bad_policy_and_times() -> None:
    with pytest.raises(ValueError):
        local_due(Z("UTC"), dt.time(9), None, NOW, "later")
    for bad in ("9:00", "24:00", "12:60", "ab:cd", "12-00", "", "12:00:00"):
        with pytest.raises(ValueError):
            parse_hhmm(bad)
    assert parse_hhmm("23:59") == dt.time(23, 59)


def test_user_zone_name() -> None:
    berlin = {"device_id": "d-2", "timezone": "Europe/Berlin"}
    kolkata = {"device_id": "d-1", "timezone": "Asia/Kolkata"}
    assert user_zone_name({"timezone": "America/New_York"}, [berlin], "Asia/Kolkata") == "America/New_York"
    assert user_zone_name({}, [berlin, kolkata], None) == "Asia/Kolkata"  # first device by id
    assert user_zone_name(None, [{"device_id": "d-0", "timezone": "Mars/Base"}, berlin], None) == "Europe/Berlin"
    assert user_zone_name({"timezone": "Nowhere/Land"}, [], "Australia/Lord_Howe") == "Australia/Lord_Howe"
    assert user_zone_name(None, [], "Not/A_Zone") == "UTC"
    assert user_zone_name(None, [], None) == "UTC"


def test_split_by_zone_computes_once_per_zone() -> None:
    n = notification(send_at_local="09:00", if_passed="skip", target={"all": True})
    users: list[tuple[str, Devices, Preferences | None]] = [
        ("u-1", {"d-1": device("d-1", timezone="Europe/Berlin")}, None),
        ("u-2", {"d-1": device("d-1")}, {"timezone": "Europe/Berlin"}),
        ("u-3", {"d-1": device("d-1", timezone="Australia/Lord_Howe"),
                 "d-2": device("d-2", platform="fcm", active=False)}, None),
        ("u-4", {"d-1": device("d-1")}, None),  # no zone anywhere: the app's default
        ("u-5", {}, {"timezone": "Asia/Kolkata"}),  # no devices: nothing to schedule
    ]
    groups, skipped = split_by_zone(n, users, NOW, "America/New_York")
    assert groups == {"Europe/Berlin": (utc(2026, 12, 2, 8, 0), ["u-1", "u-2"])}
    # 09:00 has passed in Lord Howe (12:40) and in New York (Dec 1, 20:40); the inactive device is not told.
    assert skipped == [("u-3", "d-1", "apns"), ("u-4", "d-1", "apns")]
    groups, skipped = split_by_zone({**n, "if_passed": "tomorrow"}, users, NOW, None)
    assert groups["Australia/Lord_Howe"] == (utc(2026, 12, 2, 22, 0), ["u-3"])
    assert split_by_zone({**n, "if_passed": "tomorrow"}, users, NOW, "America/New_York")[0][
        "America/New_York"] == (utc(2026, 12, 2, 14, 0), ["u-4"])
    assert groups["UTC"] == (utc(2026, 12, 2, 9, 0), ["u-4"]) and skipped == []


def test_split_by_zone_on_a_date_and_a_segment() -> None:
    n = notification(send_at_local="08:30", send_on="2026-12-24", target={"segment": {"platforms": ["fcm"]}},
                     if_passed="skip")
    users: list[tuple[str, Devices, Preferences | None]] = [
        ("u-1", {"d-1": device("d-1", timezone="Asia/Kolkata")}, None)]
    groups, _ = split_by_zone(n, users, NOW, None)
    assert groups == {"Asia/Kolkata": (utc(2026, 12, 24, 3, 0), ["u-1"])}
    _, skipped = split_by_zone({**n, "send_on": "2026-12-01"}, users, NOW, None)
    assert skipped == []  # skipped, but its only device is outside the segment: no status for it


def test_pending_local_time() -> None:
    assert pending_local_time({"send_at_local": "09:00"})
    assert not pending_local_time({"send_at_local": "09:00", "local_zone": "UTC"})
    assert not pending_local_time({})
