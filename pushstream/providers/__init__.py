"""One package per provider: payload builder (pure), answer classification (pure), client (I/O)."""

from collections.abc import Callable
from typing import Any

from pushstream.models.vocabulary import Platform
from pushstream.providers.apns.payload import build_apns_payload
from pushstream.providers.fcm.payload import build_fcm_message
from pushstream.providers.webpush.payload import build_webpush_payload

PAYLOAD_BUILDERS: dict[str, Callable[[dict[str, Any], str | None, str | None], dict[str, Any]]] = {
    Platform.APNS: build_apns_payload,
    Platform.FCM: build_fcm_message,
    Platform.WEBPUSH: build_webpush_payload,
}


def build_payload(platform: str, notification: dict[str, Any], title: str | None, body: str | None) -> dict[str, Any]:
    """The platform's payload for one localized variant of a notification."""
    return PAYLOAD_BUILDERS[platform](notification, title, body)
