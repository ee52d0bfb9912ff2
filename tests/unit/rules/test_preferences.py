"""A user's own rules: opt-outs, quiet hours (time zones, DST), daily caps and the delivery memory."""

from __future__ import annotations

import copy
import datetime as dt
import zoneinfo

import pytest

from pushstream.models.values import Preferences, UserState
from pushstream.rules import preferences
from pushstream.rules.preferences import (
    COUNT_DAYS_KEPT,
    SENT_MEMORY_MAX,
    SENT_MEMORY_SECONDS,
    already_sent,
    cap_exceeded,
    day_bucket,
    opted_in,
    quiet_hours_end,
    record_sent,
    sent_origin,
    user_zone,
)

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
UTC = dt.UTC


def local(
    zone: dt.tzinfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    fold: int = 0,
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return local(UTC, year, month, day, hour, minute, second)


def quiet(start: str, end: str) -> Preferences:
    return {"quiet_hours": {"start": start, "end": end}}


# --- opted_in -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefs", "channel", "category", "expected"),
    [
        (None, "marketing", None, True),
        ({}, "marketing", "price_drop", True),
        ({"channels": {}, "categories": {}}, "marketing", None, True),
        ({"channels": {"marketing": False}}, "marketing", None, False),
        ({"channels": {"marketing": True}}, "marketing", None, True),
        ({"channels": {"news": False}}, "marketing", None, True),
        # transactional ignores channel opt-outs ...
        ({"channels": {"transactional": False}}, "transactional", None, True),
        ({"channels": {"marketing": False}}, "transactional", "order_shipped", True),
        # ... but honours category opt-outs
        ({"categories": {"order_shipped": False}}, "transactional", "order_shipped", False),
        ({"categories": {"price_drop": False}}, "marketing", "price_drop", False),
        ({"categories": {"price_drop": True}}, "marketing", "price_drop", True),
        ({"categories": {"price_drop": False}}, "marketing", "order_shipped", True),
        ({"categories": {"price_drop": False}}, "marketing", None, True),
        (
            {"channels": {"marketing": True}, "categories": {"price_drop": False}},
            "marketing",
            "price_drop",
            False,
        ),
    ],
)
def test_opted_in(prefs: Preferences | None, channel: str, category: str | None, expected: bool) -> None:
    assert opted_in(prefs, channel, category) is expected


# --- user_zone ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefs", "device_tz", "expected"),
    [
        ({"timezone": "Europe/Berlin"}, "America/New_York", BERLIN),
        ({"timezone": None}, "America/New_York", NEW_YORK),
        (None, "Asia/Kolkata", KOLKATA),
        (None, None, UTC),
        ({"timezone": "Not/AZone"}, None, UTC),
        ({"timezone": "Europe"}, None, UTC),
        (None, "", UTC),
    ],
)
def test_user_zone_prefers_the_users_setting_then_the_device(
    prefs: Preferences | None, device_tz: str | None, expected: dt.tzinfo
) -> None:
    assert user_zone(prefs, device_tz) == expected


# --- quiet hours ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefs", "now", "expected"),
    [
        # no quiet hours at all
        (None, local(BERLIN, 2026, 11, 22, 23, 0), None),
        ({}, local(BERLIN, 2026, 11, 22, 23, 0), None),
        ({"quiet_hours": None}, local(BERLIN, 2026, 11, 22, 23, 0), None),
        (quiet("22:00", "22:00"), local(BERLIN, 2026, 11, 22, 22, 0), None),
        # a window within one day: start inclusive, end exclusive
        (quiet("13:00", "15:00"), local(BERLIN, 2026, 11, 22, 12, 59, 59), None),
        (quiet("13:00", "15:00"), local(BERLIN, 2026, 11, 22, 13, 0), local(BERLIN, 2026, 11, 22, 15, 0)),
        (
            quiet("13:00", "15:00"),
            local(BERLIN, 2026, 11, 22, 14, 59, 59),
            local(BERLIN, 2026, 11, 22, 15, 0),
        ),
        (quiet("13:00", "15:00"), local(BERLIN, 2026, 11, 22, 15, 0), None),
        # a window that wraps midnight ends on the next day when entered in the evening
        (quiet("22:00", "07:00"), local(BERLIN, 2026, 11, 22, 21, 59, 59), None),
        (quiet("22:00", "07:00"), local(BERLIN, 2026, 11, 22, 22, 0), local(BERLIN, 2026, 11, 23, 7, 0)),
        (quiet("22:00", "07:00"), local(BERLIN, 2026, 11, 22, 23, 59, 59), local(BERLIN, 2026, 11, 23, 7, 0)),
        (quiet("22:00", "07:00"), local(BERLIN, 2026, 11, 23, 0, 0), local(BERLIN, 2026, 11, 23, 7, 0)),
        (quiet("22:00", "07:00"), local(BERLIN, 2026, 11, 23, 6, 59, 59), local(BERLIN, 2026, 11, 23, 7, 0)),
        (quiet("22:00", "07:00"), local(BERLIN, 2026, 11, 23, 7, 0), None),
        (quiet("22:00", "07:00"), local(BERLIN, 2026, 11, 23, 12, 0), None),
        # the end of a month and a year
        (quiet("23:00", "06:00"), local(BERLIN, 2026, 12, 31, 23, 30), local(BERLIN, 2027, 1, 1, 6, 0)),
        # 00:00 start: the whole early morning
        (quiet("00:00", "06:00"), local(BERLIN, 2026, 11, 22, 0, 0), local(BERLIN, 2026, 11, 22, 6, 0)),
        (quiet("00:00", "06:00"), local(BERLIN, 2026, 11, 21, 23, 59), None),
    ],
)
def test_quiet_hours_end_in_berlin(
    prefs: Preferences | None, now: dt.datetime, expected: dt.datetime | None
) -> None:
    assert quiet_hours_end(prefs, BERLIN, now) == expected


def test_quiet_hours_end_is_returned_in_utc() -> None:
    end = quiet_hours_end(quiet("22:00", "07:00"), BERLIN, utc(2026, 11, 22, 22, 0))
    assert end is not None and end.utcoffset() == dt.timedelta(0)
    assert end == utc(2026, 11, 23, 6, 0)


@pytest.mark.parametrize(
    ("zone", "now_utc", "expected_utc"),
    [
        # 03:00 UTC is 04:00 in Berlin (quiet), 22:00 in New York (quiet), 08:30 in Kolkata (not quiet)
        (BERLIN, utc(2026, 11, 22, 3, 0), utc(2026, 11, 22, 6, 0)),
        (NEW_YORK, utc(2026, 11, 22, 3, 0), utc(2026, 11, 22, 12, 0)),
        (KOLKATA, utc(2026, 11, 22, 3, 0), None),
        # 17:00 UTC is 22:30 in Kolkata: quiet until 07:00 IST = 01:30 UTC next day
        (KOLKATA, utc(2026, 11, 22, 17, 0), utc(2026, 11, 23, 1, 30)),
        (UTC, utc(2026, 11, 22, 22, 0), utc(2026, 11, 23, 7, 0)),
    ],
)
def test_quiet_hours_are_in_the_users_time_zone(
    zone: dt.tzinfo, now_utc: dt.datetime, expected_utc: dt.datetime | None
) -> None:
    assert quiet_hours_end(quiet("22:00", "07:00"), zone, now_utc) == expected_utc


@pytest.mark.parametrize(
    ("now", "expected_utc"),
    [
        # 2026-03-29: Berlin springs forward at 02:00 CET → 03:00 CEST. The night is an hour shorter.
        (local(BERLIN, 2026, 3, 28, 22, 0), utc(2026, 3, 29, 5, 0)),
        (local(BERLIN, 2026, 3, 29, 1, 59), utc(2026, 3, 29, 5, 0)),
        (local(BERLIN, 2026, 3, 29, 3, 0), utc(2026, 3, 29, 5, 0)),
        # 2026-10-25: Berlin falls back at 03:00 CEST → 02:00 CET. The night is an hour longer.
        (local(BERLIN, 2026, 10, 24, 22, 0), utc(2026, 10, 25, 6, 0)),
        (local(BERLIN, 2026, 10, 25, 2, 30, fold=0), utc(2026, 10, 25, 6, 0)),
        (local(BERLIN, 2026, 10, 25, 2, 30, fold=1), utc(2026, 10, 25, 6, 0)),
    ],
)
def test_quiet_hours_across_dst_transitions_end_at_local_seven(
    now: dt.datetime, expected_utc: dt.datetime
) -> None:
    end = quiet_hours_end(quiet("22:00", "07:00"), BERLIN, now)
    assert end == expected_utc
    assert end is not None and end.astimezone(BERLIN).time() == dt.time(7, 0)


def test_spring_forward_night_is_seven_hours_not_eight() -> None:
    start = local(BERLIN, 2026, 3, 28, 23, 0)
    end = quiet_hours_end(quiet("23:00", "07:00"), BERLIN, start)
    assert end is not None and end - start == dt.timedelta(hours=7)


def test_fall_back_night_is_nine_hours_not_eight() -> None:
    start = local(BERLIN, 2026, 10, 24, 23, 0)
    end = quiet_hours_end(quiet("23:00", "07:00"), BERLIN, start)
    assert end is not None and end - start == dt.timedelta(hours=9)


@pytest.mark.parametrize(
    ("now", "expected_utc"),
    [
        # 02:10 local happens twice on 2026-10-25. In the first pass (CEST) the end is 02:30 CEST ...
        (utc(2026, 10, 25, 0, 10), utc(2026, 10, 25, 0, 30)),
        # ... between the two passes local time is 02:30-02:59 CEST: outside the window ...
        (utc(2026, 10, 25, 0, 40), None),
        # ... and in the second pass (CET) quiet hours resume until 02:30 CET, which lies ahead, not behind.
        (utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 30)),
        (utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 1, 30)),
        (utc(2026, 10, 25, 1, 30), None),
    ],
)
def test_quiet_hours_ending_in_the_repeated_hour(now: dt.datetime, expected_utc: dt.datetime | None) -> None:
    assert quiet_hours_end(quiet("22:00", "02:30"), BERLIN, now) == expected_utc


@pytest.mark.parametrize("minute", [0, 15, 30, 45, 59])
def test_quiet_hours_end_always_lies_ahead_on_the_fall_back_day(minute: int) -> None:
    for hour_utc in (0, 1):
        now = utc(2026, 10, 25, hour_utc, minute)
        end = quiet_hours_end(quiet("22:00", "02:45"), BERLIN, now)
        if end is not None:
            assert end > now


@pytest.mark.parametrize("minute", [0, 20, 40, 59])
def test_quiet_hours_ending_in_the_skipped_hour_end_after_the_jump(minute: int) -> None:
    # 02:30 does not exist in Berlin on 2026-03-29; quiet hours still end once the clock has passed it.
    now = local(BERLIN, 2026, 3, 29, 1, minute)
    end = quiet_hours_end(quiet("22:00", "02:30"), BERLIN, now)
    assert end is not None
    assert end > now
    assert end >= utc(2026, 3, 29, 1, 0), "not before the jump to 03:00 CEST"
    assert end <= utc(2026, 3, 29, 1, 30), "no later than 03:30 CEST"
    assert quiet_hours_end(quiet("22:00", "02:30"), BERLIN, end) is None


# --- day buckets and caps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        (UTC, utc(2026, 11, 22, 23, 30), "2026-11-22"),
        (BERLIN, utc(2026, 11, 22, 23, 30), "2026-11-23"),
        (NEW_YORK, utc(2026, 11, 23, 3, 0), "2026-11-22"),
        (KOLKATA, utc(2026, 11, 22, 18, 29), "2026-11-22"),
        (KOLKATA, utc(2026, 11, 22, 18, 30), "2026-11-23"),
    ],
)
def test_day_bucket_is_the_local_date(zone: dt.tzinfo, now: dt.datetime, expected: str) -> None:
    assert day_bucket(zone, now) == expected


DAY = "2026-11-22"


@pytest.mark.parametrize(
    ("prefs", "state", "channel", "expected"),
    [
        (None, {"counts": {DAY: {"marketing": 100}}}, "marketing", False),
        ({"max_per_day": {}}, {"counts": {DAY: {"marketing": 100}}}, "marketing", False),
        ({"max_per_day": {"marketing": 2}}, None, "marketing", False),
        ({"max_per_day": {"marketing": 2}}, {"counts": {DAY: {"marketing": 1}}}, "marketing", False),
        ({"max_per_day": {"marketing": 2}}, {"counts": {DAY: {"marketing": 2}}}, "marketing", True),
        ({"max_per_day": {"marketing": 2}}, {"counts": {DAY: {"marketing": 3}}}, "marketing", True),
        ({"max_per_day": {"marketing": 0}}, None, "marketing", True),
        # another day's sends do not count
        ({"max_per_day": {"marketing": 2}}, {"counts": {"2026-11-21": {"marketing": 5}}}, "marketing", False),
        # another channel's sends and limits do not count
        ({"max_per_day": {"marketing": 2}}, {"counts": {DAY: {"transactional": 9}}}, "marketing", False),
        ({"max_per_day": {"marketing": 2}}, {"counts": {DAY: {"marketing": 9}}}, "transactional", False),
        (
            {"max_per_day": {"transactional": 1}},
            {"counts": {DAY: {"transactional": 1}}},
            "transactional",
            True,
        ),
    ],
)
def test_cap_exceeded(
    prefs: Preferences | None, state: UserState | None, channel: str, expected: bool
) -> None:
    assert cap_exceeded(prefs, state, channel, DAY) is expected


# --- the delivery memory --------------------------------------------------------------------------


NOW_TS = utc(2026, 11, 22, 12, 0).timestamp()


def test_record_sent_from_nothing() -> None:
    state = record_sent(None, "n-1", "marketing", DAY, NOW_TS)
    assert state["sent"] == {"n-1": NOW_TS}
    assert state["counts"] == {DAY: {"marketing": 1}}
    assert sent_origin(state, "n-1") is None
    assert already_sent(state, "n-1")
    assert not already_sent(state, "n-2")
    assert not already_sent(None, "n-1")


def test_record_sent_counts_per_day_and_channel() -> None:
    state = record_sent(None, "n-1", "marketing", DAY, NOW_TS)
    state = record_sent(state, "n-2", "marketing", DAY, NOW_TS + 1)
    state = record_sent(state, "n-3", "transactional", DAY, NOW_TS + 2)
    assert state["counts"] == {DAY: {"marketing": 2, "transactional": 1}}
    assert cap_exceeded({"max_per_day": {"marketing": 2}}, state, "marketing", DAY)


@pytest.mark.parametrize(("channel", "day"), [(None, DAY), ("marketing", None), (None, None)])
def test_record_sent_without_a_delivery_remembers_the_id_but_does_not_count(
    channel: str | None, day: str | None
) -> None:
    state = record_sent(None, "n-1", channel, day, NOW_TS)
    assert already_sent(state, "n-1")
    assert state["counts"] == {}


def test_record_sent_forgets_ids_older_than_the_memory_window() -> None:
    state: UserState = {
        "sent": {"old": NOW_TS - SENT_MEMORY_SECONDS, "recent": NOW_TS - SENT_MEMORY_SECONDS + 1},
        "counts": {},
    }
    updated = record_sent(state, "n-new", None, None, NOW_TS)
    assert set(updated["sent"]) == {"recent", "n-new"}


def test_record_sent_memory_is_bounded_and_keeps_the_newest() -> None:
    state: UserState | None = None
    for i in range(SENT_MEMORY_MAX + 50):
        state = record_sent(state, f"n-{i}", None, None, NOW_TS + i)
    assert state is not None
    assert len(state["sent"]) == SENT_MEMORY_MAX
    assert "n-0" not in state["sent"] and "n-49" not in state["sent"]
    assert "n-50" in state["sent"] and f"n-{SENT_MEMORY_MAX + 49}" in state["sent"]


def test_record_sent_keeps_only_the_most_recent_day_buckets() -> None:
    state: UserState | None = None
    days = ["2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22"]
    for i, day in enumerate(days):
        state = record_sent(state, f"n-{i}", "marketing", day, NOW_TS + i)
    assert state is not None
    assert list(state["counts"]) == days[-COUNT_DAYS_KEPT:]


def test_record_sent_does_not_modify_its_input() -> None:
    state = record_sent(None, "n-1", "marketing", DAY, NOW_TS, "pushstream.notifications:0:1")
    snapshot = copy.deepcopy(state)
    record_sent(state, "n-2", "marketing", DAY, NOW_TS + 1, "pushstream.notifications:0:2")
    assert state == snapshot


def test_recording_the_same_id_again_refreshes_it_without_duplicating() -> None:
    state = record_sent(None, "n-1", None, None, NOW_TS)
    state = record_sent(state, "n-1", None, None, NOW_TS + 10)
    assert state["sent"] == {"n-1": NOW_TS + 10}


ORIGIN = "pushstream.notifications:3:17"


def test_record_sent_remembers_the_origin_record_of_an_id() -> None:
    state = record_sent(None, "n-1", "marketing", DAY, NOW_TS, ORIGIN)
    state = record_sent(state, "n-2", None, None, NOW_TS + 1)
    assert sent_origin(state, "n-1") == ORIGIN
    assert sent_origin(state, "n-2") is None
    assert sent_origin(None, "n-1") is None


def test_origins_are_forgotten_with_their_ids() -> None:
    state = record_sent(None, "old", None, None, NOW_TS - SENT_MEMORY_SECONDS, ORIGIN)
    assert sent_origin(state, "old") == ORIGIN
    state = record_sent(state, "new", None, None, NOW_TS)
    assert not already_sent(state, "old")
    assert sent_origin(state, "old") is None


def test_memory_constants_are_sane() -> None:
    # A week of dedup memory and at least today and yesterday for caps (local days straddle UTC days).
    assert preferences.SENT_MEMORY_SECONDS >= 24 * 3600
    assert preferences.COUNT_DAYS_KEPT >= 2


TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("prefs", "device_tz", "expected"),
    [
        # the app's default_timezone only when neither the user nor the device names a usable zone
        (None, None, TOKYO),
        ({"timezone": None}, "", TOKYO),
        ({"timezone": "Not/AZone"}, None, TOKYO),
        (None, "Europe", TOKYO),
        ({"timezone": "Europe/Berlin"}, None, BERLIN),
        (None, "America/New_York", NEW_YORK),
        ({"timezone": "Asia/Kolkata"}, "America/New_York", KOLKATA),
        # a user's zone that is no zone is passed over for the device's, not for the default
        ({"timezone": "Not/AZone"}, "America/New_York", NEW_YORK),
    ],
)
def test_user_zone_falls_back_to_the_apps_default_zone(
    prefs: Preferences | None, device_tz: str | None, expected: dt.tzinfo
) -> None:
    assert user_zone(prefs, device_tz, TOKYO) == expected
