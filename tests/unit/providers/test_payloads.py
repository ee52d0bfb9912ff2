"""Provider payloads built from one localized variant of a notification: APNs, FCM v1 and Web Push."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pushstream.providers import PAYLOAD_BUILDERS, build_payload
from pushstream.providers.apns.payload import apns_priority, build_apns_payload, push_type
from pushstream.providers.fcm.payload import build_fcm_message, stringify_data
from pushstream.providers.webpush.payload import MAX_PLAINTEXT_BYTES, build_webpush_payload
from tests.unit.factories import notification

# --- APNs -----------------------------------------------------------------------------------------


def test_apns_alert_with_custom_data_beside_aps() -> None:
    n = notification(data={"order_id": "42", "nested": {"a": [1, 2]}})
    assert build_apns_payload(n, "Title", "Body") == {
        "aps": {"alert": {"title": "Title", "body": "Body"}},
        "order_id": "42",
        "nested": {"a": [1, 2]},
    }


@pytest.mark.parametrize(
    ("title", "body", "alert"),
    [("T", None, {"title": "T"}), (None, "B", {"body": "B"}), ("", None, {"title": ""})],
)
def test_apns_alert_holds_only_the_texts_given(
    title: str | None, body: str | None, alert: dict[str, str]
) -> None:
    payload = build_apns_payload(notification(), title, body)
    assert payload["aps"] == {"alert": alert}
    assert push_type(payload) == "alert"


def test_apns_without_text_is_a_background_push() -> None:
    payload = build_apns_payload(notification(data={"sync": "1"}), None, None)
    assert payload == {"aps": {"content-available": 1}, "sync": "1"}
    assert push_type(payload) == "background"


def test_apns_collapse_key_becomes_the_thread_id() -> None:
    payload = build_apns_payload(notification(collapse_key="order-42"), "T", None)
    assert payload["aps"]["thread-id"] == "order-42"
    assert "thread-id" not in build_apns_payload(notification(collapse_key=None), "T", None)["aps"]


def test_apns_custom_data_never_goes_inside_aps() -> None:
    payload = build_apns_payload(notification(data={"badge": 3}), "T", None)
    assert payload["aps"] == {"alert": {"title": "T"}}
    assert payload["badge"] == 3


@pytest.mark.parametrize(
    ("priority", "title", "expected"),
    [("high", "T", 10), ("normal", "T", 5), ("high", None, 5), ("normal", None, 5)],
)
def test_apns_priority_is_5_for_background_and_normal(
    priority: str, title: str | None, expected: int
) -> None:
    payload = build_apns_payload(notification(data={"k": "v"}), title, None)
    assert apns_priority(priority, payload) == expected


# --- FCM v1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"s": "text"}, {"s": "text"}),
        ({"n": 42}, {"n": "42"}),
        ({"f": 1.5}, {"f": "1.5"}),
        ({"b": True}, {"b": "true"}),
        ({"z": None}, {"z": "null"}),
        ({"l": [1, "a"]}, {"l": '[1,"a"]'}),
        ({"o": {"k": "v"}}, {"o": '{"k":"v"}'}),
        ({"u": "ü ✓"}, {"u": "ü ✓"}),
    ],
)
def test_fcm_data_values_are_strings(data: dict[str, Any] | None, expected: dict[str, str]) -> None:
    assert stringify_data(data) == expected


def test_fcm_high_priority_message_with_every_override() -> None:
    n = notification(priority="high", ttl=3600, collapse_key="order-42", data={"order_id": 42})
    assert build_fcm_message(n, "Title", "Body") == {
        "notification": {"title": "Title", "body": "Body"},
        "data": {"order_id": "42"},
        "android": {"priority": "HIGH", "ttl": "3600s", "collapse_key": "order-42"},
        "apns": {"headers": {"apns-priority": "10", "apns-collapse-id": "order-42"}, "payload": {"aps": {}}},
        "webpush": {"headers": {"Urgency": "high", "TTL": "3600", "Topic": "order-42"}},
    }


def test_fcm_normal_priority_message_without_ttl_or_collapse_key() -> None:
    n = notification(priority="normal", ttl=None, collapse_key=None)
    assert build_fcm_message(n, "Title", None) == {
        "notification": {"title": "Title"},
        "android": {"priority": "NORMAL"},
        "apns": {"headers": {"apns-priority": "5"}, "payload": {"aps": {}}},
        "webpush": {"headers": {"Urgency": "normal"}},
    }


def test_fcm_data_only_message_is_a_background_push_on_ios() -> None:
    message = build_fcm_message(notification(priority="high", data={"sync": "1"}), None, None)
    assert "notification" not in message
    assert message["data"] == {"sync": "1"}
    assert message["android"]["priority"] == "HIGH"
    assert message["apns"] == {
        "headers": {"apns-priority": "5"},
        "payload": {"aps": {"content-available": 1}},
    }


def test_fcm_ttl_zero_is_sent_not_dropped() -> None:
    message = build_fcm_message(notification(ttl=0), "T", None)
    assert message["android"]["ttl"] == "0s"
    assert message["webpush"]["headers"]["TTL"] == "0"
    assert message["apns"]["headers"]["apns-expiration"] == "0"  # FCM to an iOS device: now or never too


def test_fcm_webpush_topic_is_a_valid_rfc8030_topic() -> None:
    key = "k" * 64
    message = build_fcm_message(notification(collapse_key=key), "T", None)
    topic = message["webpush"]["headers"]["Topic"]
    assert len(topic) == 32 and topic != "k" * 32  # a digest: cutting would merge distinct long keys
    assert message["webpush"]["headers"]["Topic"] == build_fcm_message(
        notification(collapse_key=key), "T", None)["webpush"]["headers"]["Topic"]
    assert build_fcm_message(notification(collapse_key="order-42"), "T", None)["webpush"]["headers"][
        "Topic"] == "order-42"
    assert message["android"]["collapse_key"] == key
    assert message["apns"]["headers"]["apns-collapse-id"] == key


def test_fcm_message_has_no_target() -> None:
    message = build_fcm_message(notification(), "T", "B")
    assert not {"token", "topic", "condition"} & set(message)


# --- Web Push -------------------------------------------------------------------------------------


def test_webpush_plaintext_with_every_field() -> None:
    n = notification(id="n-7", data={"url": "/orders/42"}, collapse_key="order-42")
    assert build_webpush_payload(n, "Title", "Body") == {
        "id": "n-7",
        "title": "Title",
        "body": "Body",
        "data": {"url": "/orders/42"},
        "tag": "order-42",
    }


@pytest.mark.parametrize(
    ("title", "body", "data", "expected"),
    [
        (None, None, {"k": 1}, {"id": "n-42", "data": {"k": 1}}),
        ("T", None, None, {"id": "n-42", "title": "T"}),
        (None, "B", {}, {"id": "n-42", "body": "B"}),
        ("", "", None, {"id": "n-42", "title": "", "body": ""}),
    ],
)
def test_webpush_plaintext_holds_only_what_is_given(
    title: str | None, body: str | None, data: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    assert build_webpush_payload(notification(data=data), title, body) == expected


def test_webpush_plaintext_limit_fits_one_rfc8291_record() -> None:
    # 4096-byte record - 86-byte header (salt 16, rs 4, idlen 1, keyid 65) - 1 delimiter - 16 tag.
    assert MAX_PLAINTEXT_BYTES == 4096 - 86 - 1 - 16


# --- dispatch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["apns", "fcm", "webpush"])
def test_build_payload_dispatches_to_the_platform_builder(platform: str) -> None:
    n = notification(data={"k": "v"}, ttl=60, collapse_key="c")
    assert build_payload(platform, n, "T", "B") == PAYLOAD_BUILDERS[platform](n, "T", "B")


@pytest.mark.parametrize("platform", ["apns", "fcm", "webpush"])
def test_payloads_are_plain_json(platform: str) -> None:
    n = notification(data={"k": "v", "n": 1}, ttl=60, collapse_key="c")
    payload = build_payload(platform, n, "Tïtle", "Body")
    assert orjson.loads(orjson.dumps(payload)) == payload


def test_unknown_platform_has_no_builder() -> None:
    with pytest.raises(KeyError):
        build_payload("sms", notification(), "T", "B")
