"""Hooks for the integration tests: a pre-send hook that drops or raises by device tag, a post-send hook that
writes what it gets to a file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orjson

from pushstream.hooks.examples import quiet_vips_and_utm
from pushstream.rules.hooks import PreSend

EXPLODE_TAG = "explode"


def drop_or_raise(notification: Mapping[str, Any], user: Mapping[str, Any], device: Mapping[str, Any]) -> PreSend:
    """The example hook, except that a device tagged ``explode`` makes it raise."""
    if EXPLODE_TAG in (device.get("tags") or ()):
        raise RuntimeError("a hook bug")
    return quiet_vips_and_utm(notification, user, device)


OUTCOMES_FILE_ENV = "HOOK_OUTCOMES_FILE"


def outcomes_to_file(outcomes: list[dict[str, Any]]) -> None:
    """A post-send hook: one JSON line per call (a list of status records) appended to $HOOK_OUTCOMES_FILE."""
    path = os.environ.get(OUTCOMES_FILE_ENV)
    if path:
        with open(path, "ab") as out:
            out.write(orjson.dumps(outcomes) + b"\n")
