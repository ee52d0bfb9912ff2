"""Hypothesis strategies for every external input (contract §1 topics, §4 HTTP bodies): arbitrary bytes, JSON of
arbitrary shape, and near-valid records (a valid one with one field removed, retyped, or given a hostile
value). Shared by the unit properties (tests/unit/test_fuzz_inputs.py) and the integration fuzz test.

Nothing here decides what is valid: the tests ask the decoders (`pushstream.models.inputs`) and check that the
answer is a model or an `Invalid` with a reason.
"""

from __future__ import annotations

import base64
import copy
import string
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

# Every reason a decoder may give (models/*); `internal_error` is not one: it means a decoder raised.
REASONS = frozenset({
    "empty", "oversize", "bad_json", "unknown_field", "missing_field", "bad_field", "unknown_platform",
    "unknown_app", "bad_subscription", "endpoint_not_allowed", "bad_token", "empty_notification", "bad_target",
    "bad_variants",
})

INPUT_TOPICS = ("pushstream.devices", "pushstream.preferences", "pushstream.notifications",
                "pushstream.engagement")

# Hostile strings: control characters, surrogate-free unicode of every plane, digits of other scripts, very long.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["", " ", "\x00", "\u202e", "٣", "²", "..", "/", "Z", "+00:00", "UTC", "Europe/../etc/passwd",
                     "9" * 5000, "x" * 70_000, "1" * 400, "2026-13-45T99:99:99Z", "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59-23:59", "24:00", "23:60", "1.2.3.4.5", "NaN", "-1", "true"]),
)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), hostile_text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def valid_records(app_id: str, endpoint: str = "https://updates.push.services.mozilla.com/wpush/v2/abc"
                  ) -> dict[str, list[dict[str, Any]]]:
    """Valid records of each input topic, the seeds of the near-valid ones."""
    subscription = {"endpoint": endpoint, "keys": {"p256dh": b64url(b"\x04" + bytes(range(64))),
                                                   "auth": b64url(bytes(range(16)))}}
    base_device = {"type": "register", "app_id": app_id, "user_id": "u-1", "device_id": "d-1"}
    notification = {"id": "n-1", "app_id": app_id, "channel": "transactional", "title": "t", "body": "b",
                    "target": {"user_ids": ["u-1"]}}
    return {
        "pushstream.devices": [
            {**base_device, "platform": "apns", "token": "ab" * 32, "locale": "de-AT", "timezone": "Europe/Vienna",
             "app_version": "6.4.1", "tags": ["beta"]},
            {**base_device, "platform": "fcm", "token": "fcm-token:APA91b"},
            {**base_device, "platform": "webpush", "subscription": subscription},
            {"type": "unregister", "app_id": app_id, "user_id": "u-1", "device_id": "d-1"},
        ],
        "pushstream.preferences": [
            {"app_id": app_id, "user_id": "u-1", "channels": {"marketing": False},
             "categories": {"price_drop": False}, "quiet_hours": {"start": "22:00", "end": "07:00"},
             "timezone": "Europe/Berlin", "max_per_day": {"marketing": 2}},
        ],
        "pushstream.notifications": [
            {**notification, "priority": "high", "category": "c", "data": {"k": "v"}, "ttl": 0, "collapse_key": "k",
             "localized": {"de": {"title": "T", "body": "B"}}, "send_at": "2026-11-22T18:00:00Z"},
            {**notification, "channel": "marketing",
             "target": {"segment": {"platforms": ["apns"], "tags_any": ["beta"], "locales": ["de"],
                                    "app_version_gte": "6.0"}},
             "send_at_local": "09:00", "send_on": "2026-12-24", "if_passed": "skip"},
            {**notification, "target": {"all": True},
             "variants": [{"id": "a", "weight": 50, "title": "A", "localized": {"de": {"title": "DA"}}},
                          {"id": "b", "weight": 50, "body": "B"}]},
            {**notification, "target": {"test_devices": True}},
            {"type": "cancel", "app_id": app_id, "id": "n-1"},
        ],
        "pushstream.engagement": [
            {"type": "opened", "app_id": app_id, "notification_id": "n-1", "user_id": "u-1", "device_id": "d-1",
             "at": "2026-11-22T18:00:09Z"},
        ],
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _mutate(record: dict[str, Any], path: tuple[Any, ...], how: str, new: Any) -> dict[str, Any]:
    doc = copy.deepcopy(record)
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "drop":
        del parent[last]
    elif how == "extra" and isinstance(parent, dict):
        parent[f"{last}_extra"] = new
    else:
        parent[last] = new
    return doc


@st.composite
def near_valid(draw: st.DrawFn, topic: str, app_id: str, endpoint: str | None = None) -> dict[str, Any]:
    """A valid record of ``topic`` with one field, at any depth, dropped, replaced or given a sibling."""
    records = valid_records(app_id, *([endpoint] if endpoint else []))[topic]
    record = draw(st.sampled_from(records))
    path = draw(st.sampled_from(_paths(record)))
    how = draw(st.sampled_from(["drop", "replace", "replace", "extra"]))
    return _mutate(record, path, how, draw(st.one_of(hostile_text, json_values)))


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(orjson.dumps)


@st.composite
def damaged(draw: st.DrawFn, raw: st.SearchStrategy[bytes]) -> bytes:
    """Encoded JSON cut short, with a byte flipped, or wrapped in garbage."""
    value = draw(raw)
    how = draw(st.sampled_from(["cut", "flip", "wrap"]))
    if how == "cut" and value:
        return value[:draw(st.integers(min_value=0, max_value=len(value) - 1))]
    if how == "flip" and value:
        at = draw(st.integers(min_value=0, max_value=len(value) - 1))
        return value[:at] + bytes([value[at] ^ draw(st.integers(min_value=1, max_value=255))]) + value[at + 1:]
    return draw(st.binary(max_size=8)) + value + draw(st.binary(max_size=8))


def topic_inputs(topic: str, app_id: str, endpoint: str | None = None) -> st.SearchStrategy[bytes]:
    """Raw values for an input topic: arbitrary bytes, arbitrary JSON, near-valid records and damaged JSON."""
    near = encoded(near_valid(topic, app_id, endpoint))
    # Near-valid first: hypothesis favours the first branches, and those reach the decoders' deeper checks.
    return st.one_of(near, st.binary(max_size=64), near, encoded(json_values), near, damaged(near))


# Device addresses that must never leave for anywhere but the provider (models/redact.py).
apns_tokens = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
fcm_tokens = st.text(alphabet=string.ascii_letters + string.digits + "-_:", min_size=24, max_size=180).map(
    lambda t: "Fcm" + t)


def draw_examples(strategy: st.SearchStrategy[Any], count: int, fixed_seed: int) -> list[Any]:
    """``count`` values of ``strategy``, the same ones on every run (a fixed seed): for integration tests that
    publish fuzzed records and must know each of them."""
    out: list[Any] = []

    @seed(fixed_seed)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


def first(strategy: st.SearchStrategy[Any], keep: Callable[[Any], bool], count: int, fixed_seed: int
          ) -> list[Any]:
    """Up to ``count`` drawn values that ``keep`` accepts (fixed seed)."""
    return [v for v in draw_examples(strategy, count * 3, fixed_seed) if keep(v)][:count]
