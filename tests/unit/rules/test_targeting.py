"""Segment targeting: a device matches when it satisfies every key the segment gives."""

from __future__ import annotations

from typing import Any

import pytest

from pushstream.rules.targeting import segment_matches, version_tuple
from tests.unit.factories import device


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("6", (6,)),
        ("6.0", (6,)),
        ("6.0.0", (6,)),
        ("6.4.1", (6, 4, 1)),
        ("6.4.1-beta", (6, 4, 1)),
        ("6.4.1-beta.2", (6, 4, 1)),
        ("6.4.1+build.7", (6, 4, 1)),
        ("6.10", (6, 10)),
        ("0.9", (0, 9)),
        ("0", ()),
        ("10.0.1", (10, 0, 1)),
    ],
)
def test_version_tuple(version: str, expected: tuple[int, ...]) -> None:
    assert version_tuple(version) == expected


@pytest.mark.parametrize(
    ("have", "minimum", "matches"),
    [
        ("6.4.1", "6.0", True),
        ("6.0", "6.0", True),
        ("6", "6.0.0", True),
        ("6.0.0", "6", True),
        ("5.9.9", "6.0", False),
        ("6.10", "6.9", True),
        ("6.9", "6.10", False),
        ("6.4.1-beta", "6.4.1", True),
        ("6.4", "6.4.1", False),
        ("10.0", "9.99", True),
    ],
)
def test_app_version_gte_compares_numerically(have: str, minimum: str, matches: bool) -> None:
    assert segment_matches(device(app_version=have), {"app_version_gte": minimum}) is matches


def test_app_version_gte_does_not_match_a_device_without_a_version() -> None:
    assert not segment_matches(device(app_version=None), {"app_version_gte": "1.0"})


BETA_DE_APNS = device("d-1", "apns", tags=["beta", "staff"], locale="de-AT", app_version="6.4.1")


@pytest.mark.parametrize(
    ("segment", "matches"),
    [
        ({}, True),
        ({"platforms": ["apns"]}, True),
        ({"platforms": ["apns", "fcm"]}, True),
        ({"platforms": ["fcm", "webpush"]}, False),
        ({"platforms": []}, False),
        ({"tags_any": ["beta"]}, True),
        ({"tags_any": ["gold", "staff"]}, True),
        ({"tags_any": ["gold"]}, False),
        ({"tags_any": []}, False),
        ({"locales": ["de"]}, True),
        ({"locales": ["de-AT"]}, True),
        ({"locales": ["de_at"]}, True),
        ({"locales": ["DE"]}, True),
        ({"locales": ["de-DE"]}, False),
        ({"locales": ["fr", "de"]}, True),
        ({"locales": ["en"]}, False),
        ({"app_version_gte": "6.0"}, True),
        ({"app_version_gte": "7"}, False),
        ({"platforms": ["apns"], "tags_any": ["beta"], "locales": ["de"], "app_version_gte": "6.0"}, True),
        # every key given must hold
        ({"platforms": ["apns"], "tags_any": ["beta"], "locales": ["de"], "app_version_gte": "7.0"}, False),
        ({"platforms": ["apns"], "tags_any": ["gold"], "locales": ["de"], "app_version_gte": "6.0"}, False),
        ({"platforms": ["fcm"], "tags_any": ["beta"], "locales": ["de"], "app_version_gte": "6.0"}, False),
        ({"platforms": ["apns"], "tags_any": ["beta"], "locales": ["fr"], "app_version_gte": "6.0"}, False),
    ],
)
def test_segment_matches(segment: dict[str, Any], matches: bool) -> None:
    assert segment_matches(BETA_DE_APNS, segment) is matches


def test_a_language_segment_does_not_match_a_device_of_another_region_only_tag() -> None:
    assert not segment_matches(device(locale="de"), {"locales": ["de-AT"]})


@pytest.mark.parametrize("tags", [None, []])
def test_tags_segment_does_not_match_a_device_without_tags(tags: list[str] | None) -> None:
    assert not segment_matches(device(tags=tags), {"tags_any": ["beta"]})


def test_locale_segment_does_not_match_a_device_without_a_locale() -> None:
    assert not segment_matches(device(locale=None), {"locales": ["de"]})
