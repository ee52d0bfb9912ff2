"""The per-device decision, in the contract's order (duplicates stopped before everything else)."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest

from pushstream.models.values import Device, Preferences, UserState
from pushstream.rules.routing import DELIVER, SKIP, RouteDecision, decide
from tests.unit.factories import NOW, device, notification

BERLIN_QUIET: Preferences = {"quiet_hours": {"start": "22:00", "end": "07:00"}, "timezone": "Europe/Berlin"}
# 22:30 UTC on 2026-11-22 is 23:30 in Berlin: inside the user's quiet hours, which end 07:00 CET = 06:00 UTC.
NIGHT = dt.datetime(2026, 11, 22, 22, 30, tzinfo=dt.UTC)
QUIET_END = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
SENT_N42: UserState = {"sent": {"n-42": NOW.timestamp() - 60}, "counts": {}}
CAPPED: Preferences = {"max_per_day": {"marketing": 1}}
CAPPED_STATE: UserState = {"sent": {}, "counts": {"2026-11-22": {"marketing": 1}}}
MARKETING_OPT_OUT: Preferences = {"channels": {"marketing": False}}
INACTIVE = device(active=False, inactive_reason="Unregistered")


def verdict(
    dev: Device | None = None,
    prefs: Preferences | None = None,
    state: UserState | None = None,
    now: dt.datetime = NOW,
    app_id: str = "demo",
    **n: Any,
) -> RouteDecision:
    return decide(dev or device(), app_id, notification(**n), prefs, state, now)


def test_a_device_with_nothing_in_the_way_gets_the_notification() -> None:
    assert verdict() == DELIVER
    assert verdict(channel="marketing", target={"all": True}) == DELIVER


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # duplicate first: before inactive, segment, opt-out, cap, quiet hours and TTL
        ({"state": SENT_N42}, RouteDecision("suppressed", "duplicate")),
        ({"state": SENT_N42, "dev": INACTIVE}, RouteDecision("suppressed", "duplicate")),
        (
            {"state": SENT_N42, "target": {"segment": {"platforms": ["fcm"]}}},
            RouteDecision("suppressed", "duplicate"),
        ),
        (
            {"state": SENT_N42, "prefs": MARKETING_OPT_OUT, "channel": "marketing"},
            RouteDecision("suppressed", "duplicate"),
        ),
        (
            {"state": SENT_N42, "ttl": 0, "now": NOW + dt.timedelta(seconds=1)},
            RouteDecision("suppressed", "duplicate"),
        ),
        # inactive: reported when users were addressed directly, skipped for broadcasts and segments
        ({"dev": INACTIVE}, RouteDecision("suppressed", "inactive")),
        ({"dev": INACTIVE, "target": {"all": True}}, SKIP),
        ({"dev": INACTIVE, "target": {"segment": {}}}, SKIP),
        # device active comes before app matches
        ({"dev": INACTIVE, "app_id": "other"}, RouteDecision("suppressed", "inactive")),
        ({"app_id": "other"}, SKIP),
        # segment mismatch is a skip, and comes before the user's own rules
        ({"target": {"segment": {"platforms": ["fcm"]}}}, SKIP),
        (
            {
                "target": {"segment": {"tags_any": ["beta"]}},
                "prefs": MARKETING_OPT_OUT,
                "channel": "marketing",
            },
            SKIP,
        ),
        ({"target": {"segment": {"platforms": ["apns"]}}}, DELIVER),
        # opt-out before frequency cap
        ({"prefs": MARKETING_OPT_OUT, "channel": "marketing"}, RouteDecision("suppressed", "opt_out")),
        (
            {"prefs": {**MARKETING_OPT_OUT, **CAPPED}, "state": CAPPED_STATE, "channel": "marketing"},
            RouteDecision("suppressed", "opt_out"),
        ),
        ({"prefs": {"categories": {"order": False}}, "category": "order"}, RouteDecision("suppressed", "opt_out")),
        ({"prefs": MARKETING_OPT_OUT, "channel": "transactional"}, DELIVER),
        # frequency cap before quiet hours
        (
            {"prefs": CAPPED, "state": CAPPED_STATE, "channel": "marketing"},
            RouteDecision("suppressed", "frequency_cap"),
        ),
        (
            {
                "prefs": {**CAPPED, **BERLIN_QUIET},
                "state": {"counts": {"2026-11-22": {"marketing": 1}}},
                "channel": "marketing",
                "now": NIGHT,
            },
            RouteDecision("suppressed", "frequency_cap"),
        ),
        ({"prefs": CAPPED, "state": CAPPED_STATE, "channel": "transactional"}, DELIVER),
        # quiet hours defer marketing, never transactional
        (
            {"prefs": BERLIN_QUIET, "channel": "marketing", "now": NIGHT},
            RouteDecision("deferred", "quiet_hours", QUIET_END),
        ),
        ({"prefs": BERLIN_QUIET, "channel": "transactional", "now": NIGHT}, DELIVER),
        ({"prefs": BERLIN_QUIET, "channel": "marketing", "now": NOW}, DELIVER),
        # quiet hours before TTL
        (
            {"prefs": BERLIN_QUIET, "channel": "marketing", "now": NIGHT, "ttl": 60},
            RouteDecision("deferred", "quiet_hours", QUIET_END),
        ),
        # TTL last
        ({"ttl": 60, "now": NOW + dt.timedelta(seconds=61)}, RouteDecision("suppressed", "expired")),
        ({"ttl": 60, "now": NOW + dt.timedelta(seconds=60)}, DELIVER),
        ({"ttl": 0, "now": NOW}, DELIVER),
        # ttl 0 is "now or never": always attempted once, however late the router gets to it
        ({"ttl": 0, "now": NOW + dt.timedelta(microseconds=1)}, DELIVER),
        ({"ttl": 0, "now": NOW + dt.timedelta(hours=1)}, DELIVER),
        ({"ttl": None, "now": NOW + dt.timedelta(days=30)}, DELIVER),
    ],
)
def test_decide_in_the_contract_order(kwargs: dict[str, Any], expected: RouteDecision) -> None:
    assert verdict(**kwargs) == expected


def test_quiet_hours_use_the_device_time_zone_when_the_user_has_none() -> None:
    prefs: Preferences = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    # 22:30 UTC: 23:30 in Berlin (quiet), 17:30 in New York (not quiet)
    berlin = verdict(device(timezone="Europe/Berlin"), prefs, channel="marketing", now=NIGHT)
    new_york = verdict(device(timezone="America/New_York"), prefs, channel="marketing", now=NIGHT)
    assert berlin == RouteDecision("deferred", "quiet_hours", QUIET_END)
    assert new_york == DELIVER


def test_the_users_time_zone_wins_over_the_device_time_zone() -> None:
    night_in_berlin = verdict(
        device(timezone="America/New_York"), BERLIN_QUIET, channel="marketing", now=NIGHT
    )
    assert night_in_berlin.action == "deferred"


def test_the_frequency_cap_counts_the_users_local_day() -> None:
    # 23:30 UTC on 2026-11-22 is already 2026-11-23 in Berlin.
    late = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
    state: UserState = {"counts": {"2026-11-23": {"marketing": 1}}}
    berlin: Preferences = {**CAPPED, "timezone": "Europe/Berlin"}
    assert verdict(prefs=berlin, state=state, channel="marketing", now=late) == RouteDecision(
        "suppressed", "frequency_cap"
    )
    assert verdict(prefs=CAPPED, state=state, channel="marketing", now=late) == DELIVER


def test_a_device_without_an_active_flag_counts_as_active() -> None:
    legacy = cast(Device, {k: v for k, v in device().items() if k != "active"})
    assert verdict(legacy) == DELIVER


def test_quiet_hours_fall_back_to_the_apps_default_zone_when_neither_user_nor_device_has_one() -> None:
    import zoneinfo

    prefs: Preferences = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    n = notification(channel="marketing")
    berlin, new_york = zoneinfo.ZoneInfo("Europe/Berlin"), zoneinfo.ZoneInfo("America/New_York")
    # 22:30 UTC: 23:30 in Berlin (quiet), 17:30 in New York (not), 22:30 in UTC (quiet, ends 07:00 UTC)
    assert decide(device(), "demo", n, prefs, None, NIGHT, berlin) == RouteDecision(
        "deferred", "quiet_hours", QUIET_END)
    assert decide(device(), "demo", n, prefs, None, NIGHT, new_york) == DELIVER
    assert decide(device(), "demo", n, prefs, None, NIGHT) == RouteDecision(
        "deferred", "quiet_hours", dt.datetime(2026, 11, 23, 7, 0, tzinfo=dt.UTC))
    # the device's zone wins over the app's, and the user's over both
    assert decide(device(timezone="America/New_York"), "demo", n, prefs, None, NIGHT, berlin) == DELIVER
    assert decide(device(timezone="America/New_York"), "demo", n, {**prefs, "timezone": "Europe/Berlin"}, None,
                  NIGHT, new_york) == RouteDecision("deferred", "quiet_hours", QUIET_END)


def test_the_daily_cap_counts_in_the_apps_default_zone_when_user_and_device_have_none() -> None:
    import zoneinfo

    # 23:30 UTC on the 22nd is the 23rd in Berlin: yesterday's count (the 22nd's) does not cap today.
    late = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
    n = notification(channel="marketing")
    assert decide(device(), "demo", n, CAPPED, CAPPED_STATE, late) == RouteDecision("suppressed", "frequency_cap")
    assert decide(device(), "demo", n, CAPPED, CAPPED_STATE, late, zoneinfo.ZoneInfo("Europe/Berlin")) == DELIVER
