"""Wire records: JSON loading, validation of devices, preferences and notifications, dead letters."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

import orjson
import pytest

from pushstream.config import LimitsSettings
from pushstream.models import (
    DeadLetter,
    DeliveryBatch,
    DeviceEvent,
    IntentBatch,
    Invalid,
    NotificationRequest,
    PreferenceEvent,
    StatusEvent,
    TokenClaims,
    UserEvents,
    decode,
    encode,
    parse_device_event,
    parse_notification,
    parse_preference_event,
)
from pushstream.models.base import iso, load_json_object
from pushstream.models.dlq import dead_letter
from pushstream.models.notifications import MAX_TTL_SECONDS
from pushstream.models.registry import endpoint_allowed
from pushstream.models.status import FINAL_STATUSES, Status
from tests.unit.factories import (
    APNS_TOKEN,
    AUTH,
    FCM_TOKEN,
    P256DH,
    WEBPUSH_ENDPOINT,
    b64url,
    raw_device,
    raw_notification,
    settings,
    subscription,
    without,
)

SETTINGS = settings()
RECEIVED_AT = 1_795_000_000.0
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def invalid(fn: Any, *args: Any, **kwargs: Any) -> Invalid:
    with pytest.raises(Invalid) as excinfo:
        fn(*args, **kwargs)
    return excinfo.value


# --- load_json_object -----------------------------------------------------------------------------


def test_load_json_object_returns_the_object() -> None:
    assert load_json_object(b'{"a": 1, "b": [true]}', max_bytes=100) == {"a": 1, "b": [True]}


def test_load_json_object_accepts_exactly_the_limit_and_rejects_one_byte_more() -> None:
    raw = b'{"k": "' + b"x" * 10 + b'"}'
    assert load_json_object(raw, max_bytes=len(raw)) == {"k": "x" * 10}
    error = invalid(load_json_object, raw, max_bytes=len(raw) - 1)
    assert error.reason == "oversize"
    assert str(len(raw)) in error.detail


def test_oversize_is_checked_before_parsing() -> None:
    assert invalid(load_json_object, b"not json at all", max_bytes=3).reason == "oversize"


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"{'a': 1}", b"nope", b'{"a": "\xff"}', b'{"a": 1} trailing'],
    ids=["empty", "truncated", "single-quotes", "word", "invalid-utf8", "trailing-garbage"],
)
def test_malformed_json_is_bad_json(raw: bytes) -> None:
    assert invalid(load_json_object, raw, max_bytes=1000).reason == "bad_json"


@pytest.mark.parametrize(
    ("raw", "kind"), [(b"[1]", "list"), (b'"s"', "str"), (b"3", "int"), (b"null", "NoneType")]
)
def test_json_that_is_not_an_object_is_bad_json(raw: bytes, kind: str) -> None:
    error = invalid(load_json_object, raw, max_bytes=1000)
    assert error.reason == "bad_json"
    assert kind in error.detail


def test_a_record_without_a_value_is_empty() -> None:
    assert invalid(load_json_object, None, max_bytes=1000).reason == "empty"


def test_invalid_carries_reason_and_detail() -> None:
    error = Invalid("missing_field", "'user_id' is required")
    assert (error.reason, error.detail) == ("missing_field", "'user_id' is required")
    assert str(error) == "missing_field: 'user_id' is required"
    assert isinstance(error, ValueError)


# --- device events --------------------------------------------------------------------------------


def test_apns_registration_with_every_field() -> None:
    event = parse_device_event(
        raw_device("apns", locale="de_DE", timezone="Europe/Berlin", app_version="6.4.1", tags=["beta"]),
        SETTINGS,
    )
    assert event == DeviceEvent(
        type="register",
        app_id="demo",
        user_id="u-1",
        device_id="d-1",
        platform="apns",
        token=APNS_TOKEN,
        subscription=None,
        locale="de-DE",
        timezone="Europe/Berlin",
        app_version="6.4.1",
        tags=["beta"],
    )


def test_fcm_registration_keeps_the_token_and_leaves_optional_fields_empty() -> None:
    event = parse_device_event(raw_device("fcm"), SETTINGS)
    assert (event.platform, event.token, event.subscription) == ("fcm", FCM_TOKEN, None)
    assert (event.locale, event.timezone, event.app_version, event.tags) == (None, None, None, None)


def test_webpush_registration_keeps_only_endpoint_and_keys() -> None:
    sub = {**subscription(), "expirationTime": None, "extra": "dropped"}
    event = parse_device_event(raw_device("webpush", subscription=sub), SETTINGS)
    assert event.token is None
    assert event.subscription == {"endpoint": WEBPUSH_ENDPOINT, "keys": {"p256dh": P256DH, "auth": AUTH}}


def test_type_defaults_to_register() -> None:
    assert parse_device_event(without(raw_device(), "type"), SETTINGS).type == "register"


def test_unregister_needs_only_the_ids_and_ignores_the_rest() -> None:
    event = parse_device_event(
        {"type": "unregister", "app_id": "demo", "user_id": "u-1", "device_id": "d-1", "token": "not-hex"},
        SETTINGS,
    )
    assert event == DeviceEvent(type="unregister", app_id="demo", user_id="u-1", device_id="d-1")


@pytest.mark.parametrize(
    "token",
    ["a" * 16, "0123456789abcdef" * 4, "ABCDEF0123456789" * 4, "f" * 400],
    ids=["shortest", "lowercase", "uppercase", "longest"],
)
def test_valid_apns_tokens(token: str) -> None:
    assert parse_device_event(raw_device("apns", token=token), SETTINGS).token == token


@pytest.mark.parametrize("locale", ["de", "de-AT", "zh-Hant-TW", "es-419", "gsw"])
def test_valid_locales(locale: str) -> None:
    assert parse_device_event(raw_device(locale=locale), SETTINGS).locale == locale


@pytest.mark.parametrize("version", ["6", "6.4", "6.4.1", "6.4.1.2", "6.4.1-beta.2", "6.4.1+build7"])
def test_valid_app_versions(version: str) -> None:
    assert parse_device_event(raw_device(app_version=version), SETTINGS).app_version == version


LONG_TAGS_SETTINGS = settings(limits=LimitsSettings(max_tags=2))


@pytest.mark.parametrize(
    ("event", "reason", "detail"),
    [
        (raw_device(colour="red"), "unknown_field", "'colour'"),
        (without(raw_device(), "app_id"), "missing_field", "'app_id'"),
        (without(raw_device(), "user_id"), "missing_field", "'user_id'"),
        (without(raw_device(), "device_id"), "missing_field", "'device_id'"),
        (raw_device(app_id="other"), "unknown_app", "'other'"),
        (raw_device(type="delete"), "bad_field", "'type'"),
        (raw_device(platform="android"), "unknown_platform", "'platform'"),
        (raw_device(platform="APNS"), "unknown_platform", "'platform'"),
        (without(raw_device(), "platform"), "missing_field", "'platform'"),
        (raw_device(user_id=""), "bad_field", "must not be empty"),
        (raw_device(user_id=42), "bad_field", "must be a string"),
        (raw_device(user_id="u" * 257), "bad_field", "longer than 256"),
        (without(raw_device("apns"), "token"), "missing_field", "'token'"),
        (without(raw_device("fcm"), "token"), "missing_field", "'token'"),
        (raw_device("apns", token="abc"), "bad_token", "hex"),
        (raw_device("apns", token="a" * 15), "bad_token", "hex"),
        (raw_device("apns", token="a" * 63), "bad_token", "hex"),
        (raw_device("apns", token="a" * 402), "bad_token", "hex"),
        (raw_device("apns", token="g" * 64), "bad_token", "hex"),
        (raw_device("apns", token="ab" * 31 + "a\n"), "bad_token", "hex"),
        (raw_device("apns", token="ab" * 32 + "\n"), "bad_token", "hex"),
        (raw_device("fcm", token="tok\nen"), "bad_token", "printable"),
        (raw_device("fcm", token="t" * 4097), "bad_field", "longer than 4096"),
        (raw_device(locale="german"), "bad_field", "'locale'"),
        (raw_device(locale="de\n"), "bad_field", "'locale'"),
        (raw_device(locale="d"), "bad_field", "'locale'"),
        (raw_device(timezone="Mars/Olympus_Mons"), "bad_field", "'timezone'"),
        (raw_device(timezone="Europe"), "bad_field", "'timezone'"),
        (raw_device(timezone="x" * 300), "bad_field", "'timezone'"),
        (raw_device(timezone="/etc/localtime"), "bad_field", "'timezone'"),
        (raw_device(timezone=1), "bad_field", "'timezone'"),
        (raw_device(app_version="six"), "bad_field", "'app_version'"),
        (raw_device(app_version="6.4.1\n"), "bad_field", "'app_version'"),
        (raw_device(tags="beta"), "bad_field", "'tags'"),
        (raw_device(tags=["beta", ""]), "bad_field", "'tags'"),
        (raw_device(tags=["b" * 65]), "bad_field", "'tags'"),
        (raw_device(tags=[1]), "bad_field", "'tags'"),
    ],
)
def test_invalid_device_events(event: dict[str, Any], reason: str, detail: str) -> None:
    error = invalid(parse_device_event, event, SETTINGS)
    assert error.reason == reason
    assert detail in error.detail


def test_tags_beyond_the_configured_limit_are_refused() -> None:
    assert parse_device_event(raw_device(tags=["a", "b"]), LONG_TAGS_SETTINGS).tags == ["a", "b"]
    error = invalid(parse_device_event, raw_device(tags=["a", "b", "c"]), LONG_TAGS_SETTINGS)
    assert (error.reason, error.detail) == ("bad_field", "'tags' has more than 2 items")


# --- Web Push subscriptions and the SSRF guard ----------------------------------------------------


def webpush_event(**sub_overrides: Any) -> dict[str, Any]:
    return raw_device("webpush", subscription={**subscription(), **sub_overrides})


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (without(raw_device("webpush"), "subscription"), "missing_field"),
        (raw_device("webpush", subscription="https://push.example/abc"), "missing_field"),
        (webpush_event(endpoint=None), "bad_subscription"),
        (webpush_event(endpoint=5), "bad_subscription"),
        (webpush_event(endpoint="https://fcm.googleapis.com/" + "x" * 2048), "bad_subscription"),
        (webpush_event(endpoint="ftp://fcm.googleapis.com/x"), "bad_subscription"),
        (webpush_event(endpoint="fcm.googleapis.com/x"), "bad_subscription"),
        (webpush_event(endpoint="https:///x"), "bad_subscription"),
        (webpush_event(endpoint="https://[::1/x"), "bad_subscription"),
        (webpush_event(endpoint="https://fcm.googleapis.com:99999/x"), "bad_subscription"),
        (webpush_event(endpoint="http://updates.push.services.mozilla.com/x"), "bad_subscription"),
        (webpush_event(keys=None), "bad_subscription"),
        (webpush_event(keys={"p256dh": P256DH}), "bad_subscription"),
        (webpush_event(keys={"auth": AUTH}), "bad_subscription"),
        (webpush_event(keys={"p256dh": b64url(b"\x04" + bytes(63)), "auth": AUTH}), "bad_subscription"),
        (webpush_event(keys={"p256dh": b64url(b"\x02" + bytes(64)), "auth": AUTH}), "bad_subscription"),
        (webpush_event(keys={"p256dh": "!!!!", "auth": AUTH}), "bad_subscription"),
        (webpush_event(keys={"p256dh": "é" * 87, "auth": AUTH}), "bad_subscription"),
        (webpush_event(keys={"p256dh": P256DH, "auth": b64url(bytes(15))}), "bad_subscription"),
        (webpush_event(keys={"p256dh": P256DH, "auth": 16}), "bad_subscription"),
        (webpush_event(endpoint="https://evil.example/x"), "endpoint_not_allowed"),
        (webpush_event(endpoint="https://fcm.googleapis.com@evil.example/x"), "endpoint_not_allowed"),
        (webpush_event(endpoint="https://fcm.googleapis.com.evil.example/x"), "endpoint_not_allowed"),
        (webpush_event(endpoint="https://127.0.0.1/x"), "endpoint_not_allowed"),
        (webpush_event(endpoint="https://169.254.169.254/latest/meta-data"), "endpoint_not_allowed"),
    ],
)
def test_invalid_webpush_subscriptions(event: dict[str, Any], reason: str) -> None:
    assert invalid(parse_device_event, event, SETTINGS).reason == reason


def test_standard_base64_padding_is_optional_for_subscription_keys() -> None:
    padded = base64.urlsafe_b64encode(b"\x04" + bytes(range(64))).decode()
    assert padded.endswith("=")
    event = parse_device_event(webpush_event(keys={"p256dh": padded, "auth": AUTH}), SETTINGS)
    assert event.subscription is not None and event.subscription["keys"]["p256dh"] == padded


def test_webpush_for_an_app_without_an_allow_list_is_refused() -> None:
    no_webpush = settings(webpush=False)
    assert invalid(parse_device_event, raw_device("webpush"), no_webpush).reason == "endpoint_not_allowed"


def test_exactly_listed_loopback_endpoint_may_use_plain_http() -> None:
    local = settings(allowed_hosts=("127.0.0.1",))
    event = parse_device_event(webpush_event(endpoint="http://127.0.0.1:8082/push/abc"), local)
    assert event.subscription is not None
    assert event.subscription["endpoint"] == "http://127.0.0.1:8082/push/abc"


MOZILLA = ("*.push.services.mozilla.com",)


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("updates.push.services.mozilla.com", MOZILLA, True),
        ("UPDATES.Push.Services.Mozilla.com", MOZILLA, True),
        ("a.b.push.services.mozilla.com", MOZILLA, True),
        ("push.services.mozilla.com", MOZILLA, False),
        ("push.services.mozilla.com.evil.example", MOZILLA, False),
        ("evilpush.services.mozilla.com", MOZILLA, False),
        ("fcm.googleapis.com", ("fcm.googleapis.com",), True),
        ("fcm.googleapis.com", ("FCM.GoogleAPIs.com",), True),
        ("fcm.googleapis.com", (), False),
        ("8.8.8.8", ("8.8.8.8",), True),
        ("8.8.8.8", ("*",), True),
        # private and loopback addresses: only when listed exactly, never through a pattern
        ("127.0.0.1", ("127.0.0.1",), True),
        ("127.0.0.1", ("*",), False),
        ("127.0.0.2", ("127.0.0.1",), False),
        ("10.0.0.5", ("10.0.0.*",), False),
        ("10.0.0.5", ("10.0.0.5",), True),
        ("192.168.1.10", ("*",), False),
        ("172.16.0.1", ("*",), False),
        ("169.254.169.254", ("*",), False),
        ("100.64.0.1", ("*",), False),
        ("0.0.0.0", ("*",), False),
        ("224.0.0.1", ("*",), False),
        ("::1", ("*",), False),
        ("::1", ("::1",), True),
        ("::1", ("[::1]",), True),
        ("[::1]", ("::1",), True),
        ("fd00::1", ("*",), False),
        ("fe80::1", ("*",), False),
        ("::ffff:127.0.0.1", ("*",), False),
        ("localhost", ("*",), False),
        ("localhost", ("*host",), False),
        ("localhost", ("localhost",), True),
        ("LOCALHOST", ("localhost",), True),
        ("localhost.", ("*",), False),
        ("push.localhost", ("*",), False),
        # IPv4 literals in the legacy forms resolvers still accept
        ("2130706433", ("*",), False),
        ("127.1", ("*",), False),
        ("0x7f.0.0.1", ("*",), False),
        ("0177.0.0.1", ("*",), False),
    ],
)
def test_endpoint_allowed(host: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert endpoint_allowed(host, allowed) is expected


# --- preference events ----------------------------------------------------------------------------


FULL_PREFERENCES: dict[str, Any] = {
    "app_id": "demo",
    "user_id": "u-1",
    "channels": {"marketing": False},
    "categories": {"price_drop": False},
    "quiet_hours": {"start": "22:00", "end": "07:00"},
    "timezone": "Europe/Berlin",
    "max_per_day": {"marketing": 2},
}


def test_preference_event_from_the_contract_example() -> None:
    event = parse_preference_event(FULL_PREFERENCES, SETTINGS)
    assert event == PreferenceEvent(
        app_id="demo",
        user_id="u-1",
        fields=["categories", "channels", "max_per_day", "quiet_hours", "timezone"],
        channels={"marketing": False},
        categories={"price_drop": False},
        quiet_hours={"start": "22:00", "end": "07:00"},
        timezone="Europe/Berlin",
        max_per_day={"marketing": 2},
    )


def test_preference_event_lists_only_the_named_fields() -> None:
    event = parse_preference_event(
        {"app_id": "demo", "user_id": "u-1", "channels": {"marketing": True}}, SETTINGS
    )
    assert event.fields == ["channels"]
    assert event.quiet_hours is None and event.max_per_day is None


def test_null_names_a_field_so_that_it_is_cleared() -> None:
    event = parse_preference_event({"app_id": "demo", "user_id": "u-1", "quiet_hours": None}, SETTINGS)
    assert event.fields == ["quiet_hours"]
    assert event.quiet_hours is None


@pytest.mark.parametrize(
    ("quiet", "valid"),
    [
        ({"start": "00:00", "end": "23:59"}, True),
        ({"start": "22:00", "end": "07:00"}, True),
        ({"start": "22:00"}, False),
        ({"start": "22:00", "end": "07:00", "tz": "UTC"}, False),
        ({"start": "24:00", "end": "07:00"}, False),
        ({"start": "7:00", "end": "08:00"}, False),
        ({"start": "07:60", "end": "08:00"}, False),
        ({"start": "22:00\n", "end": "07:00"}, False),
        ({"start": 2200, "end": 700}, False),
        ("22:00-07:00", False),
    ],
)
def test_quiet_hours_format(quiet: Any, valid: bool) -> None:
    data = {"app_id": "demo", "user_id": "u-1", "quiet_hours": quiet}
    if valid:
        assert parse_preference_event(data, SETTINGS).quiet_hours == quiet
    else:
        assert invalid(parse_preference_event, data, SETTINGS).reason == "bad_field"


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        ({"app_id": "demo", "user_id": "u-1"}, "missing_field", "at least one preference"),
        ({"app_id": "demo", "channels": {}}, "missing_field", "'user_id'"),
        ({"app_id": "other", "user_id": "u-1", "channels": {}}, "unknown_app", "'other'"),
        ({"app_id": "demo", "user_id": "u-1", "language": "de"}, "unknown_field", "'language'"),
        ({"app_id": "demo", "user_id": "u-1", "channels": {"marketing": "no"}}, "bad_field", "'channels'"),
        ({"app_id": "demo", "user_id": "u-1", "channels": ["marketing"]}, "bad_field", "'channels'"),
        ({"app_id": "demo", "user_id": "u-1", "categories": {"x": 0}}, "bad_field", "'categories'"),
        ({"app_id": "demo", "user_id": "u-1", "timezone": "Berlin"}, "bad_field", "'timezone'"),
        (
            {"app_id": "demo", "user_id": "u-1", "max_per_day": {"marketing": -1}},
            "bad_field",
            "'max_per_day'",
        ),
        (
            {"app_id": "demo", "user_id": "u-1", "max_per_day": {"marketing": 10_001}},
            "bad_field",
            "'max_per_day'",
        ),
        (
            {"app_id": "demo", "user_id": "u-1", "max_per_day": {"marketing": True}},
            "bad_field",
            "'max_per_day'",
        ),
        (
            {"app_id": "demo", "user_id": "u-1", "max_per_day": {"marketing": 1.5}},
            "bad_field",
            "'max_per_day'",
        ),
        ({"app_id": "demo", "user_id": "u-1", "max_per_day": 3}, "bad_field", "'max_per_day'"),
    ],
)
def test_invalid_preference_events(data: dict[str, Any], reason: str, detail: str) -> None:
    error = invalid(parse_preference_event, data, SETTINGS)
    assert error.reason == reason
    assert detail in error.detail


@pytest.mark.parametrize("cap", [0, 10_000])
def test_frequency_cap_bounds_are_inclusive(cap: int) -> None:
    data = {"app_id": "demo", "user_id": "u-1", "max_per_day": {"marketing": cap}}
    assert parse_preference_event(data, SETTINGS).max_per_day == {"marketing": cap}


# --- notification requests ------------------------------------------------------------------------


CONTRACT_NOTIFICATION: dict[str, Any] = {
    "id": "n-42",
    "app_id": "demo",
    "channel": "transactional",
    "category": "order_shipped",
    "priority": "high",
    "target": {"user_ids": ["u-1", "u-2"]},
    "title": "Your order shipped",
    "body": "Arrives Tuesday",
    "data": {"order_id": "42"},
    "localized": {"de": {"title": "Bestellung versandt", "body": "Ankunft Dienstag"}},
    "ttl": 3600,
    "collapse_key": "order-42",
    "send_at": "2026-11-22T18:00:00Z",
}


def parse(data: dict[str, Any], **kwargs: Any) -> NotificationRequest:
    return parse_notification(data, kwargs.pop("settings", SETTINGS), received_at=RECEIVED_AT)


def test_notification_from_the_contract_example() -> None:
    n = parse(CONTRACT_NOTIFICATION)
    assert n.asdict() == {**CONTRACT_NOTIFICATION, "received_at": RECEIVED_AT, "variants": None,
                          "send_at_local": None, "send_on": None, "if_passed": None}
    assert n.lane == "transactional"
    assert n.expires_at() == RECEIVED_AT + 3600


@pytest.mark.parametrize(
    ("channel", "priority"), [("transactional", "high"), ("marketing", "normal"), (None, "high")]
)
def test_defaults_for_channel_and_priority(channel: str | None, priority: str) -> None:
    data = raw_notification(channel=channel) if channel else without(raw_notification(), "channel")
    n = parse(data)
    assert n.channel == (channel or "transactional")
    assert n.priority == priority
    assert n.lane == ("bulk" if channel == "marketing" else "transactional")


def test_explicit_priority_is_kept() -> None:
    assert parse(raw_notification(channel="marketing", priority="high")).priority == "high"


def test_without_ttl_a_notification_never_expires() -> None:
    n = parse(raw_notification())
    assert n.ttl is None and n.expires_at() is None


def test_duplicate_user_ids_are_dropped_keeping_the_order() -> None:
    n = parse(raw_notification(target={"user_ids": ["u-2", "u-1", "u-2", "u-3", "u-1"]}))
    assert n.target == {"user_ids": ["u-2", "u-1", "u-3"]}


@pytest.mark.parametrize(
    "target",
    [
        {"all": True},
        {"segment": {}},
        {
            "segment": {
                "platforms": ["apns", "webpush"],
                "tags_any": ["beta"],
                "locales": ["de"],
                "app_version_gte": "6.0",
            }
        },
    ],
)
def test_valid_targets_are_kept(target: dict[str, Any]) -> None:
    assert parse(raw_notification(target=target)).target == target


def test_localized_keys_are_normalized_to_lowercase_tags() -> None:
    n = parse(raw_notification(localized={"de_AT": {"title": "Servus"}, "EN": {"body": "Hi"}}))
    assert n.localized == {"de-at": {"title": "Servus"}, "en": {"body": "Hi"}}


@pytest.mark.parametrize(
    "texts",
    [{"title": "T"}, {"body": "B"}, {"title": "", "body": None}, {"data": {"k": "v"}}, {"title": ""}],
    ids=["title-only", "body-only", "empty-title", "data-only", "empty-string-title"],
)
def test_a_title_a_body_or_data_is_enough(texts: dict[str, Any]) -> None:
    data = {**without(raw_notification(), "title", "body"), **texts}
    n = parse(data)
    assert (n.title, n.body, n.data) == (texts.get("title"), texts.get("body"), texts.get("data"))


@pytest.mark.parametrize("ttl", [0, 1, MAX_TTL_SECONDS])
def test_ttl_bounds_are_inclusive(ttl: int) -> None:
    assert parse(raw_notification(ttl=ttl)).ttl == ttl


@pytest.mark.parametrize(
    "send_at", ["2026-11-22T18:00:00Z", "2026-11-22T19:00:00+01:00", "2026-11-22T18:00:00.5Z"]
)
def test_send_at_with_a_time_zone_is_kept_verbatim(send_at: str) -> None:
    assert parse(raw_notification(send_at=send_at)).send_at == send_at


TWO_USERS = settings(limits=LimitsSettings(max_target_users=2))


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (raw_notification(priority_level="x"), "unknown_field", "'priority_level'"),
        (without(raw_notification(), "id"), "missing_field", "'id'"),
        (raw_notification(id="n" * 201), "bad_field", "'id'"),
        (without(raw_notification(), "app_id"), "missing_field", "'app_id'"),
        (raw_notification(app_id="other"), "unknown_app", "'other'"),
        (raw_notification(channel="promo"), "bad_field", "'channel'"),
        (raw_notification(priority="urgent"), "bad_field", "'priority'"),
        (without(raw_notification(), "title", "body"), "empty_notification", "title, a body or data"),
        (raw_notification(title=None, body=None, data={}), "empty_notification", "title, a body or data"),
        (raw_notification(title=5), "bad_field", "'title'"),
        (raw_notification(body="b" * 4097), "bad_field", "'body'"),
        (raw_notification(data=["x"]), "bad_field", "'data'"),
        (raw_notification(data={"aps": {}}), "bad_field", "'aps'"),
        (raw_notification(data={"from": "x"}), "bad_field", "'from'"),
        (raw_notification(data={"message_type": "x"}), "bad_field", "'message_type'"),
        (raw_notification(data={"notification": "x", "ok": 1}), "bad_field", "'notification'"),
        (raw_notification(category=""), "bad_field", "'category'"),
        (raw_notification(category="c" * 129), "bad_field", "'category'"),
        (raw_notification(collapse_key="c" * 65), "bad_field", "'collapse_key'"),
        (raw_notification(ttl=-1), "bad_field", "'ttl'"),
        (raw_notification(ttl=MAX_TTL_SECONDS + 1), "bad_field", "'ttl'"),
        (raw_notification(ttl="60"), "bad_field", "'ttl'"),
        (raw_notification(ttl=60.0), "bad_field", "'ttl'"),
        (raw_notification(ttl=True), "bad_field", "'ttl'"),
        (raw_notification(send_at="tomorrow"), "bad_field", "'send_at'"),
        (raw_notification(send_at="2026-11-22T18:00:00"), "bad_field", "time zone"),
        (raw_notification(send_at=1795000000), "bad_field", "'send_at'"),
        (raw_notification(localized=["de"]), "bad_field", "'localized'"),
        (raw_notification(localized={"de": "Hallo"}), "bad_field", "'localized.de'"),
        (raw_notification(localized={"de": {"subtitle": "x"}}), "bad_field", "'localized.de'"),
        (raw_notification(localized={"de": {"title": 1}}), "bad_field", "'localized.de'"),
        (without(raw_notification(), "target"), "bad_target", "exactly one"),
        (raw_notification(target={}), "bad_target", "exactly one"),
        (raw_notification(target={"user_ids": ["u-1"], "all": True}), "bad_target", "exactly one"),
        (raw_notification(target=["u-1"]), "bad_target", "exactly one"),
        (raw_notification(target={"users": ["u-1"]}), "bad_target", "unknown target 'users'"),
        (raw_notification(target={"user_ids": []}), "bad_target", "non-empty list"),
        (raw_notification(target={"user_ids": "u-1"}), "bad_target", "non-empty list"),
        (raw_notification(target={"user_ids": ["u-1", ""]}), "bad_target", "non-empty list"),
        (raw_notification(target={"user_ids": ["u-1", 2]}), "bad_target", "non-empty list"),
        (raw_notification(target={"user_ids": ["u" * 257]}), "bad_target", "non-empty list"),
        (raw_notification(target={"all": False}), "bad_target", "'target.all' must be true"),
        (raw_notification(target={"all": 1}), "bad_target", "'target.all' must be true"),
        (raw_notification(target={"segment": []}), "bad_target", "'target.segment' keys"),
        (raw_notification(target={"segment": {"os": ["ios"]}}), "bad_target", "'target.segment' keys"),
        (
            raw_notification(target={"segment": {"tags_any": "beta"}}),
            "bad_target",
            "'target.segment.tags_any'",
        ),
        (raw_notification(target={"segment": {"locales": [1]}}), "bad_target", "'target.segment.locales'"),
        (raw_notification(target={"segment": {"platforms": ["ios"]}}), "unknown_platform", "platforms"),
        (raw_notification(target={"segment": {"app_version_gte": 6}}), "bad_target", "app_version_gte"),
    ],
)
def test_invalid_notifications(data: dict[str, Any], reason: str, detail: str) -> None:
    error = invalid(parse, data)
    assert error.reason == reason
    assert detail in error.detail


def test_target_user_count_is_limited_by_the_settings() -> None:
    assert parse(raw_notification(target={"user_ids": ["a", "b"]}), settings=TWO_USERS).target[
        "user_ids"
    ] == ["a", "b"]
    error = invalid(parse, raw_notification(target={"user_ids": ["a", "b", "c"]}), settings=TWO_USERS)
    assert error.reason == "bad_target"
    assert "has 3 users, the limit is 2" in error.detail


# --- dead letters ---------------------------------------------------------------------------------


def test_dead_letter_keeps_a_text_value_as_text() -> None:
    letter = dead_letter(
        "bad_json",
        "not valid JSON",
        topic="pushstream.devices",
        partition=3,
        offset=17,
        key=b"u-1",
        value=b'{"type": "regist',
    )
    assert (letter.reason, letter.detail, letter.topic, letter.partition, letter.offset) == (
        "bad_json",
        "not valid JSON",
        "pushstream.devices",
        3,
        17,
    )
    assert (letter.key, letter.value, letter.value_encoding) == ("u-1", '{"type": "regist', "utf-8")
    assert ISO_MS.match(letter.at)


def test_dead_letter_keeps_binary_values_losslessly_as_base64() -> None:
    raw = b"\xff\xfe\x00binary"
    letter = dead_letter("bad_json", "d", topic="t", partition=0, offset=0, key=None, value=raw)
    assert letter.value_encoding == "base64"
    assert letter.value is not None and base64.b64decode(letter.value) == raw
    assert letter.key is None


def test_dead_letter_without_a_value_or_origin() -> None:
    letter = dead_letter(
        "empty", "record has no value", topic="t", partition=None, offset=None, key=b"\xff", value=None
    )
    assert (letter.value, letter.value_encoding, letter.partition, letter.offset) == (
        None,
        "utf-8",
        None,
        None,
    )
    assert letter.key == "\ufffd"


def test_dead_letter_round_trips_through_the_wire_format() -> None:
    letter = dead_letter("oversize", "too big", topic="t", partition=1, offset=2, key=b"k", value=b"v")
    wire = orjson.loads(encode(letter))
    assert set(wire) == {
        "reason",
        "detail",
        "topic",
        "partition",
        "offset",
        "at",
        "key",
        "value",
        "value_encoding",
    }
    assert decode(DeadLetter, encode(letter)) == letter


# --- encoding, timestamps and statuses ------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        DeviceEvent(
            type="register",
            app_id="demo",
            user_id="u-1",
            device_id="d-1",
            platform="apns",
            token=APNS_TOKEN,
            tags=["beta"],
        ),
        PreferenceEvent(app_id="demo", user_id="u-1", fields=["channels"], channels={"marketing": False}),
        NotificationRequest(
            id="n-1",
            app_id="demo",
            channel="marketing",
            priority="normal",
            target={"all": True},
            received_at=RECEIVED_AT,
            title="ü ✓",
            data={"k": [1, 2]},
        ),
        StatusEvent(
            notification_id="n-1",
            app_id="demo",
            user_id="u-1",
            device_id="d-1",
            platform="fcm",
            status="delivered",
            at="2026-11-22T18:00:01.234Z",
            provider_status=200,
        ),
        UserEvents(events=[{"kind": "device", "type": "unregister"}]),
        TokenClaims(claims=[{"app_id": "demo", "fingerprint": "abc"}]),
        IntentBatch(notification={"id": "n-1"}, user_ids=["u-1"]),
        DeliveryBatch(
            notification_id="n-1",
            app_id="demo",
            platform="apns",
            channel="transactional",
            priority="high",
            items=[{"user_id": "u-1", "token": APNS_TOKEN, "payload": {}}],
            expires_at=RECEIVED_AT + 60,
            collapse_key="c",
        ),
    ],
    ids=lambda r: type(r).__name__,
)
def test_records_round_trip_as_plain_json_objects(record: Any) -> None:
    raw = encode(record)
    wire = orjson.loads(raw)
    assert isinstance(wire, dict)
    assert not any(key.startswith("__") for key in wire), "no Faust metadata on the wire"
    assert wire == record.asdict()
    assert decode(type(record), raw) == record


def test_status_record_has_the_contract_fields() -> None:
    status = StatusEvent(
        notification_id="n-42",
        app_id="demo",
        user_id="u-1",
        device_id="d-1",
        platform="apns",
        status=Status.DELIVERED,
        at="2026-11-22T18:00:01.234Z",
        provider_status=200,
    )
    assert orjson.loads(encode(status)) == {
        "notification_id": "n-42",
        "app_id": "demo",
        "user_id": "u-1",
        "device_id": "d-1",
        "platform": "apns",
        "status": "delivered",
        "reason": None,
        "provider_status": 200,
        "attempt": 1,
        "at": "2026-11-22T18:00:01.234Z",
        # Added (the contract allows added fields): which token the outcome is about.
        "token_fingerprint": None,
        # Added (contract v2): the A/B variant, set on every status of a notification with variants.
        "variant": None,
    }


def test_status_values_are_the_contract_values() -> None:
    assert {s.value for s in Status} == {
        "delivered",
        "invalid_token",
        "failed",
        "suppressed",
        "deferred",
        "retrying",
        "dead_lettered",
    }


@pytest.mark.parametrize(
    ("status", "final"), [(s, s not in (Status.DEFERRED, Status.RETRYING)) for s in Status]
)
def test_only_deferred_and_retrying_are_not_final(status: Status, final: bool) -> None:
    assert (status in FINAL_STATUSES) is final


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (dt.datetime(2026, 11, 22, 18, 0, 1, 234567, tzinfo=dt.UTC), "2026-11-22T18:00:01.234Z"),
        (
            dt.datetime(2026, 11, 22, 19, 0, 1, 999, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2026-11-22T18:00:01.000Z",
        ),
        (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "2026-01-01T00:00:00.000Z"),
    ],
)
def test_iso_is_utc_with_milliseconds_and_z(when: dt.datetime, expected: str) -> None:
    assert iso(when) == expected


def test_delivery_batches_carry_each_shared_payload_once_and_give_it_back_to_every_item() -> None:
    from pushstream.models import DeliveryBatch, decode, encode
    from pushstream.models.internal import inline_payloads, share_payloads

    sale, sale_de = {"aps": {"alert": "Sale"}}, {"aps": {"alert": "Angebot"}}
    items = [{"user_id": f"u-{i}", "device_id": f"d-{i}", "token": f"t-{i}", "payload": sale_de if i % 3 else sale}
             for i in range(7)]
    shared, payloads = share_payloads(items)
    assert payloads == [sale, sale_de]
    assert all("payload" not in i for i in shared) and [i["p"] for i in shared] == [0, 1, 1, 0, 1, 1, 0]
    assert all("payload" in i for i in items)  # the router's items are left as they were
    raw = encode(DeliveryBatch(notification_id="n", app_id="demo", platform="apns", channel="marketing",
                               priority="normal", items=shared, payloads=payloads))
    batch = inline_payloads(decode(DeliveryBatch, raw))
    assert batch.items == items and batch.payloads is None
    # A batch written before payloads were shared (or a retry, whose items have their own) is left as it is.
    old = decode(DeliveryBatch, encode(DeliveryBatch(notification_id="n", app_id="demo", platform="apns",
                                                     channel="marketing", priority="normal", items=items)))
    assert inline_payloads(old).items == items
