"""Hooks for the integration tests: one that drops, one that raises, chosen by device tag."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pushstream.hooks.examples import quiet_vips_and_utm
from pushstream.rules.hooks import PreSend

EXPLODE_TAG = "explode"


def drop_or_raise(notification: Mapping[str, Any], user: Mapping[str, Any], device: Mapping[str, Any]) -> PreSend:
    """The example hook, except that a device tagged ``explode`` makes it raise."""
    if EXPLODE_TAG in (device.get("tags") or ()):
        raise RuntimeError("a hook bug")
    return quiet_vips_and_utm(notification, user, device)
