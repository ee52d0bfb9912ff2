"""Segment targeting: does a device satisfy every key the segment gives?"""

import re
from typing import Any

from pushstream.models.values import Device
from pushstream.rules.localization import locale_candidates

_NUMBERS = re.compile(r"\d+")
TEST_TAG = "test"  # the tag of an app's test devices: `target: {"test_devices": true}` reaches only those


def version_tuple(version: str) -> tuple[int, ...]:
    """'6.4.1-beta' → (6, 4, 1). Missing parts count as 0, so 6.0 == 6."""
    core = re.split(r"[-+]", version, maxsplit=1)[0]
    parts = [int(n) for n in _NUMBERS.findall(core)]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def segment_matches(device: Device, segment: dict[str, Any]) -> bool:
    platforms = segment.get("platforms")
    if platforms is not None and device["platform"] not in platforms:
        return False
    tags_any = segment.get("tags_any")
    if tags_any is not None and not set(tags_any) & set(device.get("tags") or ()):
        return False
    locales = segment.get("locales")
    if locales is not None:
        wanted = {loc.replace("_", "-").lower() for loc in locales}
        if not wanted & set(locale_candidates(device.get("locale"))):
            return False
    minimum = segment.get("app_version_gte")
    if minimum is not None:
        have = device.get("app_version")
        if have is None or version_tuple(have) < version_tuple(minimum):
            return False
    return True


def is_test_device(device: Device) -> bool:
    return TEST_TAG in (device.get("tags") or ())
