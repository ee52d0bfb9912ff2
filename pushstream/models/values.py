"""The plain values pushstream keeps in its tables and carries in its batches, as TypedDicts.

The tables and internal topics hold orjson dicts, and they stay dicts: these types cost nothing at run time,
they only let mypy check the keys the rules and agents read and write. ``total=False`` where rows written by
older versions (or built by tests) may lack a key that the code reads with ``.get``.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict


class Subscription(TypedDict, total=False):
    """A Web Push subscription as the browser gave it (contract §1): the endpoint and its ``p256dh``/``auth``."""

    endpoint: Required[str]
    keys: dict[str, str]
    expirationTime: Any


class Device(TypedDict, total=False):
    """One device of a user in the `devices` table (`rules.registry.register` writes every key)."""

    device_id: Required[str]
    platform: Required[str]
    token: str | None
    subscription: Subscription | None
    fingerprint: str
    locale: str | None
    timezone: str | None
    app_version: str | None
    tags: list[str]
    active: bool
    inactive_reason: str | None
    inactive_at: str | None
    registered_at: str
    updated_at: str


# A user's devices by device id: one `devices` table value.
Devices = dict[str, Device]


class QuietHours(TypedDict):
    start: str  # "HH:MM" in the user's zone
    end: str


class Preferences(TypedDict, total=False):
    """A user's preferences in the `preferences` table (`rules.registry.merge_preferences`)."""

    channels: dict[str, bool]
    categories: dict[str, bool]
    quiet_hours: QuietHours | None
    timezone: str | None
    max_per_day: dict[str, int]
    updated_at: str


class UserState(TypedDict, total=False):
    """The router's delivery memory of a user in `user_state` (`rules.preferences.record_sent`)."""

    sent: dict[str, float]  # notification id → when it was handled (epoch seconds), for dedup
    counts: dict[str, dict[str, int]]  # day → channel → deliveries, for the frequency caps
    origins: dict[str, str]  # notification id → the request record that handled it, to spot replays


class DeliveryItem(TypedDict, total=False):
    """One device of a `DeliveryBatch`: who, and where to; ``token`` or ``subscription`` by platform."""

    user_id: Required[str]
    device_id: Required[str]
    payload: dict[str, Any]
    token: str | None
    subscription: Subscription | None
