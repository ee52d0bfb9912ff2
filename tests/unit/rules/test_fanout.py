"""Fan-out over one user's devices: deliveries per platform, outcome statuses, the delivery memory."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from pushstream.models.values import Devices, Preferences, UserState
from pushstream.rules.fanout import UserFanOut, fan_out_user
from pushstream.rules.preferences import already_sent, sent_origin
from tests.unit.factories import APNS_TOKEN, FCM_TOKEN, NOW, device, notification, subscription

ORIGIN = "pushstream.notifications:2:40"
NIGHT = dt.datetime(2026, 11, 22, 22, 30, tzinfo=dt.UTC)  # 23:30 in Berlin
BERLIN_QUIET: Preferences = {"quiet_hours": {"start": "22:00", "end": "07:00"}, "timezone": "Europe/Berlin"}


class RecordingRenderer:
    """Renders `{"platform": p, "locale": l}` or a fixed reason; remembers what it was asked."""

    def __init__(self, reasons: dict[str, str] | None = None) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.reasons = reasons or {}

    def __call__(self, platform: str, locale: str | None) -> dict[str, Any] | str:
        self.calls.append((platform, locale))
        return self.reasons.get(platform) or {"platform": platform, "locale": locale}


def all_platforms() -> Devices:
    return {
        "d-apns": device("d-apns", "apns", locale="de-AT"),
        "d-fcm": device("d-fcm", "fcm"),
        "d-web": device("d-web", "webpush", locale="fr"),
    }


def fan_out(
    devices: Devices,
    *,
    prefs: Preferences | None = None,
    state: UserState | None = None,
    now: dt.datetime = NOW,
    configured: tuple[str, ...] = ("apns", "fcm", "webpush"),
    render: RecordingRenderer | None = None,
    origin: str | None = None,
    default_zone: dt.tzinfo = dt.UTC,
    **n: Any,
) -> UserFanOut:
    return fan_out_user(
        notification(**n),
        "demo",
        "u-1",
        devices,
        prefs,
        state,
        now,
        configured=lambda p: p in configured,
        render=render or RecordingRenderer(),
        origin=origin,
        default_zone=default_zone,
    )


def test_one_delivery_per_device_grouped_by_platform_with_its_address() -> None:
    render = RecordingRenderer()
    result = fan_out(all_platforms(), render=render)

    assert result.deliveries == {
        "apns": [
            {
                "user_id": "u-1",
                "device_id": "d-apns",
                "token": APNS_TOKEN,
                "payload": {"platform": "apns", "locale": "de-AT"},
            }
        ],
        "fcm": [
            {
                "user_id": "u-1",
                "device_id": "d-fcm",
                "token": FCM_TOKEN,
                "payload": {"platform": "fcm", "locale": None},
            }
        ],
        "webpush": [
            {
                "user_id": "u-1",
                "device_id": "d-web",
                "subscription": subscription(),
                "payload": {"platform": "webpush", "locale": "fr"},
            }
        ],
    }
    assert result.outcomes == []
    assert render.calls == [("apns", "de-AT"), ("fcm", None), ("webpush", "fr")]


def test_several_devices_of_one_platform_share_the_platform_list() -> None:
    devices = {"d-1": device("d-1", "fcm"), "d-2": device("d-2", "fcm", token="other-token")}
    result = fan_out(devices)
    assert [item["device_id"] for item in result.deliveries["fcm"]] == ["d-1", "d-2"]
    assert [item["token"] for item in result.deliveries["fcm"]] == [FCM_TOKEN, "other-token"]


def test_a_delivery_is_remembered_and_counted() -> None:
    result = fan_out(all_platforms(), channel="marketing", origin=ORIGIN)
    assert result.state is not None
    assert already_sent(result.state, "n-42")
    assert sent_origin(result.state, "n-42") == ORIGIN
    assert result.state["counts"] == {"2026-11-22": {"marketing": 1}}, "one per user, not one per device"


def test_the_count_goes_to_the_local_day_of_the_user() -> None:
    late = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
    result = fan_out({"d-1": device("d-1", timezone="Europe/Berlin")}, now=late, channel="marketing")
    assert result.state is not None and result.state["counts"] == {"2026-11-23": {"marketing": 1}}


def test_the_count_goes_to_the_local_day_of_the_apps_default_zone_when_user_and_device_have_none() -> None:
    import zoneinfo

    late = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    result = fan_out({"d-1": device("d-1")}, now=late, channel="marketing", default_zone=berlin)
    assert result.state is not None and result.state["counts"] == {"2026-11-23": {"marketing": 1}}
    # the device's zone still wins over the app's
    result = fan_out({"d-1": device("d-1", timezone="UTC")}, now=late, channel="marketing", default_zone=berlin)
    assert result.state is not None and result.state["counts"] == {"2026-11-22": {"marketing": 1}}


def test_quiet_hours_in_the_apps_default_zone_defer_the_device() -> None:
    import zoneinfo

    night = dt.datetime(2026, 11, 22, 22, 30, tzinfo=dt.UTC)  # 23:30 in Berlin, 17:30 in New York
    prefs: Preferences = {"quiet_hours": {"start": "22:00", "end": "07:00"}}
    deferred = fan_out({"d-1": device("d-1")}, prefs=prefs, now=night, channel="marketing",
                       default_zone=zoneinfo.ZoneInfo("Europe/Berlin"))
    assert deferred.deferred == ["d-1"] and deferred.deliveries == {}
    assert deferred.deferred_until == dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
    sent = fan_out({"d-1": device("d-1")}, prefs=prefs, now=night, channel="marketing",
                   default_zone=zoneinfo.ZoneInfo("America/New_York"))
    assert sent.deferred == [] and list(sent.deliveries) == ["apns"]


def test_a_platform_the_app_has_not_configured_is_dead_lettered() -> None:
    render = RecordingRenderer()
    result = fan_out(all_platforms(), configured=("fcm",), render=render)

    assert set(result.deliveries) == {"fcm"}
    assert result.outcomes == [
        ("d-apns", "apns", "dead_lettered", "platform_not_configured"),
        ("d-web", "webpush", "dead_lettered", "platform_not_configured"),
    ]
    assert render.calls == [("fcm", None)], "nothing is rendered for an unconfigured platform"


def test_a_renderer_reason_dead_letters_that_device() -> None:
    result = fan_out(all_platforms(), render=RecordingRenderer({"apns": "payload_too_large"}))
    assert set(result.deliveries) == {"fcm", "webpush"}
    assert result.outcomes == [("d-apns", "apns", "dead_lettered", "payload_too_large")]


def test_dead_letters_alone_are_final_and_remembered_without_counting() -> None:
    result = fan_out(all_platforms(), configured=(), channel="marketing")
    assert result.deliveries == {}
    assert {status for _, _, status, _ in result.outcomes} == {"dead_lettered"}
    assert result.state is not None and already_sent(result.state, "n-42")
    assert result.state["counts"] == {}


def test_suppressed_devices_are_reported_and_the_id_remembered_without_counting() -> None:
    result = fan_out(all_platforms(), prefs={"channels": {"marketing": False}}, channel="marketing")
    assert result.deliveries == {}
    assert result.outcomes == [
        ("d-apns", "apns", "suppressed", "opt_out"),
        ("d-fcm", "fcm", "suppressed", "opt_out"),
        ("d-web", "webpush", "suppressed", "opt_out"),
    ]
    assert result.state is not None and already_sent(result.state, "n-42")
    assert result.state["counts"] == {}


def test_a_duplicate_is_reported_per_device_and_changes_no_state() -> None:
    state: UserState = {"sent": {"n-42": NOW.timestamp() - 10}, "counts": {"2026-11-22": {"transactional": 1}}}
    result = fan_out(all_platforms(), state=state)
    assert result.deliveries == {}
    assert [(d, s, r) for d, _, s, r in result.outcomes] == [
        ("d-apns", "suppressed", "duplicate"),
        ("d-fcm", "suppressed", "duplicate"),
        ("d-web", "suppressed", "duplicate"),
    ]
    assert result.state is None


def test_a_replay_of_the_very_record_that_reached_the_user_produces_nothing() -> None:
    first = fan_out(all_platforms(), origin=ORIGIN)
    replay = fan_out(all_platforms(), state=first.state, origin=ORIGIN)
    assert (replay.deliveries, replay.outcomes, replay.state) == ({}, [], None)


def test_the_same_id_from_another_record_is_a_reported_duplicate() -> None:
    first = fan_out(all_platforms(), origin=ORIGIN)
    republished = fan_out(all_platforms(), state=first.state, origin="pushstream.notifications:2:99")
    assert republished.deliveries == {}
    assert {reason for _, _, _, reason in republished.outcomes} == {"duplicate"}
    assert republished.state is None


def test_deferred_only_records_nothing() -> None:
    result = fan_out(all_platforms(), prefs=BERLIN_QUIET, now=NIGHT, channel="marketing")
    assert result.deliveries == {}
    assert [status for _, _, status, _ in result.outcomes] == ["deferred"] * 3
    assert {reason for _, _, _, reason in result.outcomes} == {"quiet_hours"}
    assert result.state is None


def test_transactional_is_delivered_during_quiet_hours() -> None:
    result = fan_out(all_platforms(), prefs=BERLIN_QUIET, now=NIGHT, channel="transactional")
    assert set(result.deliveries) == {"apns", "fcm", "webpush"}
    assert result.outcomes == []


def test_inactive_devices_are_reported_next_to_deliveries_for_user_targets() -> None:
    devices = {
        "d-1": device("d-1"),
        "d-2": device("d-2", "fcm", active=False, inactive_reason="UNREGISTERED"),
    }
    result = fan_out(devices, channel="marketing")
    assert [item["device_id"] for item in result.deliveries["apns"]] == ["d-1"]
    assert result.outcomes == [("d-2", "fcm", "suppressed", "inactive")]
    assert result.state is not None and result.state["counts"] == {"2026-11-22": {"marketing": 1}}


def test_broadcasts_skip_inactive_devices_silently() -> None:
    devices = {"d-1": device("d-1", active=False), "d-2": device("d-2", "fcm", active=False)}
    result = fan_out(devices, target={"all": True})
    assert (result.deliveries, result.outcomes, result.state) == ({}, [], None)


def test_devices_outside_the_segment_are_skipped_silently() -> None:
    result = fan_out(all_platforms(), target={"segment": {"platforms": ["webpush"]}})
    assert set(result.deliveries) == {"webpush"}
    assert result.outcomes == []


@pytest.mark.parametrize("devices", [{}, {"d-1": device("d-1", "fcm")}])
def test_nothing_targeted_records_nothing(devices: Devices) -> None:
    result = fan_out(devices, target={"segment": {"platforms": ["apns"]}})
    assert (result.deliveries, result.outcomes, result.state) == ({}, [], None)


def test_expired_notifications_are_suppressed_and_remembered() -> None:
    result = fan_out(all_platforms(), ttl=10, now=NOW + dt.timedelta(seconds=11))
    assert {(status, reason) for _, _, status, reason in result.outcomes} == {("suppressed", "expired")}
    assert result.state is not None and already_sent(result.state, "n-42")


def test_fan_out_does_not_modify_its_inputs() -> None:
    devices = all_platforms()
    state: UserState = {"sent": {"n-1": NOW.timestamp() - 5}, "counts": {"2026-11-22": {"marketing": 1}}, "origins": {}}
    before = (copy.deepcopy(devices), copy.deepcopy(state))
    result = fan_out(devices, state=state, channel="marketing", origin=ORIGIN)
    assert (devices, state) == before
    assert result.state is not None and result.state["counts"] == {"2026-11-22": {"marketing": 2}}
    assert already_sent(result.state, "n-1") and already_sent(result.state, "n-42")
