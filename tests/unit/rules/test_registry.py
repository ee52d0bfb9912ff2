"""Device registry and preference state transitions for one user."""

from __future__ import annotations

import copy
from typing import Any, Literal

import pytest

from pushstream.models.values import Devices
from pushstream.rules.keys import token_fingerprint
from pushstream.rules.registry import (
    deactivate,
    device_address,
    merge_preferences,
    public_device,
    register,
    unregister,
)
from tests.unit.factories import APNS_TOKEN, FCM_TOKEN, WEBPUSH_ENDPOINT, device, subscription

T0 = "2026-11-20T10:00:00.000Z"
T1 = "2026-11-21T10:00:00.000Z"
T2 = "2026-11-22T10:00:00.000Z"
OTHER_APNS_TOKEN = "cd" * 32


def reg(device_id: str = "d-1", platform: str = "apns", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "register",
        "app_id": "demo",
        "user_id": "u-1",
        "device_id": device_id,
        "platform": platform,
        "token": None,
        "subscription": None,
        "locale": None,
        "timezone": None,
        "app_version": None,
        "tags": None,
    }
    if platform == "apns":
        event["token"] = APNS_TOKEN
    elif platform == "fcm":
        event["token"] = FCM_TOKEN
    else:
        event["subscription"] = subscription()
    event.update(fields)
    return event


# --- register -------------------------------------------------------------------------------------


def test_register_a_new_device() -> None:
    devices, fingerprint = register(
        {}, reg(locale="de-DE", timezone="Europe/Berlin", app_version="6.4.1", tags=["beta"]), T0
    )
    assert fingerprint == token_fingerprint("apns", APNS_TOKEN)
    assert devices == {
        "d-1": {
            "device_id": "d-1",
            "platform": "apns",
            "token": APNS_TOKEN,
            "subscription": None,
            "fingerprint": fingerprint,
            "locale": "de-DE",
            "timezone": "Europe/Berlin",
            "app_version": "6.4.1",
            "tags": ["beta"],
            "active": True,
            "inactive_reason": None,
            "inactive_at": None,
            "registered_at": T0,
            "updated_at": T0,
        }
    }


def test_webpush_fingerprint_is_taken_from_the_endpoint() -> None:
    devices, fingerprint = register({}, reg(platform="webpush"), T0)
    assert fingerprint == token_fingerprint("webpush", WEBPUSH_ENDPOINT)
    assert devices["d-1"]["subscription"] == subscription()
    assert devices["d-1"]["token"] is None
    assert device_address(devices["d-1"]) == WEBPUSH_ENDPOINT


def test_device_address_is_the_token_for_apns_and_fcm() -> None:
    assert device_address(device(platform="apns")) == APNS_TOKEN
    assert device_address(device(platform="fcm")) == FCM_TOKEN


def test_missing_tags_become_an_empty_list() -> None:
    devices, _ = register({}, reg(tags=None), T0)
    assert devices["d-1"]["tags"] == []


def test_re_registering_updates_the_device_and_keeps_registered_at() -> None:
    first, _ = register({}, reg(locale="en"), T0)
    second, fingerprint = register(first, reg(token=OTHER_APNS_TOKEN, locale="de"), T1)

    assert list(second) == ["d-1"]
    assert second["d-1"]["token"] == OTHER_APNS_TOKEN
    assert second["d-1"]["fingerprint"] == fingerprint == token_fingerprint("apns", OTHER_APNS_TOKEN)
    assert second["d-1"]["locale"] == "de"
    assert (second["d-1"]["registered_at"], second["d-1"]["updated_at"]) == (T0, T1)


def test_re_registering_replaces_fields_left_out() -> None:
    first, _ = register({}, reg(locale="en", tags=["beta"]), T0)
    second, _ = register(first, reg(), T1)
    assert (second["d-1"]["locale"], second["d-1"]["tags"]) == (None, [])


def test_a_token_registered_on_another_device_of_the_same_user_moves() -> None:
    devices, _ = register({}, reg("d-old"), T0)
    devices, _ = register(devices, reg("d-other", platform="fcm"), T0)
    moved, fingerprint = register(devices, reg("d-new"), T1)

    assert set(moved) == {"d-new", "d-other"}
    assert moved["d-new"]["fingerprint"] == fingerprint
    assert moved["d-new"]["registered_at"] == T1
    assert moved["d-other"] == devices["d-other"]


def test_the_same_token_on_another_platform_is_a_different_token() -> None:
    devices, _ = register({}, reg("d-1", platform="apns", token="ab" * 32), T0)
    devices, _ = register(devices, reg("d-2", platform="fcm", token="ab" * 32), T0)
    assert set(devices) == {"d-1", "d-2"}


def test_re_registering_reactivates_a_deactivated_device() -> None:
    devices, fingerprint = register({}, reg(), T0)
    assert fingerprint is not None
    inactive = deactivate(devices, "d-1", fingerprint, "Unregistered", T1)
    assert inactive is not None and inactive["d-1"]["active"] is False

    again, _ = register(inactive, reg(), T2)
    assert again["d-1"]["active"] is True
    assert (again["d-1"]["inactive_reason"], again["d-1"]["inactive_at"]) == (None, None)
    assert (again["d-1"]["registered_at"], again["d-1"]["updated_at"]) == (T0, T2)


def test_register_does_not_modify_its_input() -> None:
    devices, _ = register({}, reg("d-old"), T0)
    before = copy.deepcopy(devices)
    register(devices, reg("d-new"), T1)
    assert devices == before


# --- unregister -----------------------------------------------------------------------------------


def test_unregister_removes_only_that_device() -> None:
    devices: Devices = {"d-1": device("d-1"), "d-2": device("d-2", "fcm")}
    assert unregister(devices, "d-1") == {"d-2": devices["d-2"]}
    assert set(devices) == {"d-1", "d-2"}


def test_unregister_of_an_unknown_device_changes_nothing() -> None:
    devices: Devices = {"d-1": device("d-1")}
    assert unregister(devices, "d-9") == devices
    assert unregister({}, "d-1") == {}


# --- deactivate -----------------------------------------------------------------------------------


def test_deactivate_keeps_the_device_visible_with_the_reason() -> None:
    devices: Devices = {"d-1": device("d-1"), "d-2": device("d-2", "fcm")}
    changed = deactivate(devices, "d-1", devices["d-1"]["fingerprint"], "BadDeviceToken", T2)

    assert changed is not None
    assert changed["d-1"] == {
        **devices["d-1"],
        "active": False,
        "inactive_reason": "BadDeviceToken",
        "inactive_at": T2,
        "updated_at": T2,
    }
    assert changed["d-2"] is devices["d-2"]
    assert devices["d-1"]["active"] is True, "input untouched"


@pytest.mark.parametrize(
    ("device_id", "fingerprint"),
    [
        ("d-1", token_fingerprint("apns", OTHER_APNS_TOKEN)),  # re-registered with another token since
        ("d-9", token_fingerprint("apns", APNS_TOKEN)),  # the device is gone
    ],
    ids=["fingerprint-no-longer-matches", "device-gone"],
)
def test_deactivate_changes_nothing_unless_the_fingerprint_still_matches(
    device_id: str, fingerprint: str
) -> None:
    assert deactivate({"d-1": device("d-1")}, device_id, fingerprint, "Unregistered", T2) is None


def test_deactivate_an_already_inactive_device_changes_nothing() -> None:
    inactive = device("d-1", active=False, inactive_reason="Unregistered", inactive_at=T1)
    assert deactivate({"d-1": inactive}, "d-1", inactive["fingerprint"], "token_moved", T2) is None


# --- preferences ----------------------------------------------------------------------------------


def pref_event(**fields: Any) -> dict[str, Any]:
    return {"app_id": "demo", "user_id": "u-1", "fields": sorted(fields), **fields}


def test_first_preference_event_fills_the_defaults_for_the_rest() -> None:
    merged = merge_preferences(None, pref_event(channels={"marketing": False}), T0)
    assert merged == {
        "channels": {"marketing": False},
        "categories": {},
        "quiet_hours": None,
        "timezone": None,
        "max_per_day": {},
        "updated_at": T0,
    }


def test_a_preference_event_replaces_only_the_fields_it_names() -> None:
    current = merge_preferences(
        None,
        pref_event(
            channels={"marketing": False},
            quiet_hours={"start": "22:00", "end": "07:00"},
            timezone="Europe/Berlin",
            max_per_day={"marketing": 2},
        ),
        T0,
    )
    merged = merge_preferences(current, pref_event(channels={"news": False}, timezone="Asia/Tokyo"), T1)

    assert merged["channels"] == {"news": False}, "a named field is replaced, not merged key by key"
    assert merged["timezone"] == "Asia/Tokyo"
    assert merged["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert merged["max_per_day"] == {"marketing": 2}
    assert merged["updated_at"] == T1
    assert current["channels"] == {"marketing": False}, "input untouched"


@pytest.mark.parametrize(
    ("name", "value", "cleared"),
    [
        ("channels", {"marketing": False}, {}),
        ("categories", {"price_drop": False}, {}),
        ("quiet_hours", {"start": "22:00", "end": "07:00"}, None),
        ("timezone", "Europe/Berlin", None),
        ("max_per_day", {"marketing": 2}, {}),
    ],
)
def test_null_clears_a_field_back_to_its_default(
    name: Literal["channels", "categories", "quiet_hours", "timezone", "max_per_day"], value: Any, cleared: Any
) -> None:
    current = merge_preferences(None, pref_event(**{name: value}), T0)
    merged = merge_preferences(
        current, {"app_id": "demo", "user_id": "u-1", "fields": [name], name: None}, T1
    )
    assert merged[name] == cleared


def test_defaults_are_never_shared_between_users() -> None:
    first = merge_preferences(None, pref_event(timezone="UTC"), T0)
    first["channels"]["marketing"] = False
    first["max_per_day"]["marketing"] = 1
    cleared = merge_preferences({"channels": {"x": True}}, {"fields": ["channels"], "channels": None}, T0)
    cleared["channels"]["news"] = False

    second = merge_preferences(None, pref_event(timezone="UTC"), T1)
    assert (second["channels"], second["max_per_day"]) == ({}, {})
    again = merge_preferences({"channels": {"x": True}}, {"fields": ["channels"], "channels": None}, T1)
    assert again["channels"] == {}


# --- the HTTP view of a device --------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["apns", "fcm", "webpush"])
def test_public_device_shows_the_fingerprint_never_the_token(platform: str) -> None:
    stored = device("d-1", platform)
    view = public_device(stored)

    assert "token" not in view and "subscription" not in view
    assert view["fingerprint"] == stored["fingerprint"]
    assert view["status"] == "active"
    secret = APNS_TOKEN if platform == "apns" else FCM_TOKEN if platform == "fcm" else WEBPUSH_ENDPOINT
    assert secret not in repr(view)


def test_public_device_shows_an_inactive_device_with_its_reason() -> None:
    view = public_device(device("d-1", active=False, inactive_reason="Unregistered", inactive_at=T2))
    assert (view["status"], view["inactive_reason"], view["inactive_at"]) == ("inactive", "Unregistered", T2)


def test_public_device_does_not_modify_the_stored_device() -> None:
    stored = device("d-1")
    public_device(stored)
    assert stored["token"] == APNS_TOKEN and "status" not in stored
