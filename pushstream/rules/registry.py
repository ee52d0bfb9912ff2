"""Device registry and preference state transitions for one user."""

import copy
from collections.abc import Mapping
from typing import Any, cast

from pushstream.models.values import Device, Devices, Preferences
from pushstream.models.vocabulary import Platform
from pushstream.rules.keys import token_fingerprint

_WEBPUSH = Platform.WEBPUSH  # bound once: `address_of` runs per delivered device

def address_of(platform: str, entry: Mapping[str, Any]) -> str:
    """What a provider delivers to: the token, or the Web Push endpoint, of a device, event or delivery item."""
    if platform == _WEBPUSH:
        return str(entry["subscription"]["endpoint"])
    return str(entry["token"])


def device_address(device: Device) -> str:
    return address_of(device["platform"], device)


def address_fingerprint(platform: str, entry: Mapping[str, Any]) -> str:
    """The fingerprint of the token or endpoint: how tables, statuses and views name an address."""
    return token_fingerprint(platform, address_of(platform, entry))


def register(devices: Devices, event: Mapping[str, Any], at: str) -> tuple[Devices, str | None]:
    """Register or update a device; returns the new map and the token fingerprint the user now claims.

    The same token on another device of this user moves to the new device (one device per token).
    A re-registration reactivates a device a provider had rejected: the app has vouched for it again.
    """
    fingerprint = address_fingerprint(event["platform"], event)
    updated = {k: v for k, v in devices.items() if k == event["device_id"] or v.get("fingerprint") != fingerprint}
    previous: Mapping[str, Any] = devices.get(event["device_id"]) or {}
    updated[event["device_id"]] = {
        "device_id": event["device_id"],
        "platform": event["platform"],
        "token": event.get("token"),
        "subscription": event.get("subscription"),
        "fingerprint": fingerprint,
        "locale": event.get("locale"),
        "timezone": event.get("timezone"),
        "app_version": event.get("app_version"),
        "tags": event.get("tags") or [],
        "active": True,
        "inactive_reason": None,
        "inactive_at": None,
        "registered_at": previous.get("registered_at", at),
        "updated_at": at,
    }
    return updated, fingerprint


def unregister(devices: Devices, device_id: str) -> Devices:
    return {k: v for k, v in devices.items() if k != device_id}


def deactivate(devices: Devices, device_id: str, fingerprint: str, reason: str, at: str) -> Devices | None:
    """Soft-deactivate a device, only if it still holds the token the reason is about.

    Returns None when nothing changes (the device is gone or was re-registered with another token).
    """
    device = devices.get(device_id)
    if device is None or device.get("fingerprint") != fingerprint or not device.get("active", True):
        return None
    return {**devices, device_id: {**device, "active": False, "inactive_reason": reason, "inactive_at": at,
                                   "updated_at": at}}


_PREFERENCE_DEFAULTS: Preferences = {
    "channels": {},
    "categories": {},
    "quiet_hours": None,
    "timezone": None,
    "max_per_day": {},
}


def merge_preferences(current: Preferences | None, event: Mapping[str, Any], at: str) -> Preferences:
    """A preference event replaces the fields it names and leaves the others; null clears a field."""
    merged: dict[str, Any] = copy.deepcopy(dict(_PREFERENCE_DEFAULTS)) if current is None else dict(current)
    for name in event["fields"]:
        value = event.get(name)
        # A copy of the default: the module-level dicts must never be shared with (and mutated via) a user.
        merged[name] = copy.deepcopy(_PREFERENCE_DEFAULTS[name]) if value is None else value  # type: ignore[literal-required]
    merged["updated_at"] = at
    return cast(Preferences, merged)


def public_device(device: Mapping[str, Any]) -> dict[str, Any]:
    """The device as the HTTP API shows it: the token only as a fingerprint."""
    hidden = {"token", "subscription"}
    view = {k: v for k, v in device.items() if k not in hidden}
    view["status"] = "active" if device.get("active", True) else "inactive"
    return view
