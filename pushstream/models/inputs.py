"""Every external input decoded in one place: the raw value of a record on an input topic (contract §1) or the
body of an HTTP request (§4) becomes a validated model, or an `Invalid` naming the reason. The agents and the
HTTP handlers call these, and tests/unit/test_fuzz_inputs.py fuzzes them: nothing but `Invalid` may escape.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pushstream.config import Settings
from pushstream.models.base import Invalid, load_json_object
from pushstream.models.cancel import is_cancel, parse_cancel
from pushstream.models.engagement import OpenItem, parse_engagement
from pushstream.models.notifications import NotificationRequest, parse_notification
from pushstream.models.registry import DeviceEvent, PreferenceEvent, parse_device_event, parse_preference_event

# The kinds of HTTP body (POST /v1/apps/{app_id}/notifications, /events, /devices).
BODY_KINDS = ("notification", "event", "device")


class CancelRequest(NamedTuple):
    """A cancel record of `pushstream.notifications`."""

    app_id: str
    id: str


def decode_device(raw: bytes | None, settings: Settings) -> DeviceEvent:
    """A record of `pushstream.devices`."""
    return parse_device_event(load_json_object(raw, max_bytes=settings.limits.max_record_bytes), settings)


def decode_preference(raw: bytes | None, settings: Settings) -> PreferenceEvent:
    """A record of `pushstream.preferences`."""
    return parse_preference_event(load_json_object(raw, max_bytes=settings.limits.max_record_bytes), settings)


def decode_notification(raw: bytes | None, settings: Settings, *,
                        received_at: float) -> NotificationRequest | CancelRequest:
    """A record of `pushstream.notifications`: a request, or a cancel."""
    data = load_json_object(raw, max_bytes=settings.limits.max_record_bytes)
    if is_cancel(data):
        return CancelRequest(*parse_cancel(data, settings))
    return parse_notification(data, settings, received_at=received_at)


def decode_engagement(raw: bytes | None, settings: Settings) -> OpenItem:
    """A record of `pushstream.engagement`."""
    return parse_engagement(load_json_object(raw, max_bytes=settings.limits.max_record_bytes), settings)


def decode_body(kind: str, raw: bytes, app_id: str, settings: Settings, *,
                received_at: float) -> tuple[Any, dict[str, Any]]:
    """An HTTP body of ``kind`` posted for ``app_id``: (the validated record, the value to publish on the input
    topic: the body with its `app_id`, which the topic's decoder accepts just the same)."""
    data = load_json_object(raw, max_bytes=settings.limits.max_record_bytes)
    if data.setdefault("app_id", app_id) != app_id:
        raise Invalid("bad_field", "'app_id' in the body differs from the URL")
    if kind == "notification":
        return parse_notification(data, settings, received_at=received_at), data
    if kind == "event":
        return parse_engagement(data, settings), data
    if kind == "device":
        return parse_device_event(data, settings), data
    raise ValueError(f"unknown body kind {kind!r}")
