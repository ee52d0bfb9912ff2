"""Sender construction: the one table that maps a platform to its client class, beside `PAYLOAD_BUILDERS`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pushstream.models.vocabulary import Platform
from pushstream.providers.outcome import Sender

# Each client is imported when first built: their dependencies (h2, google-auth, cryptography) are heavy.


def _apns(settings: Any, max_in_flight: int | None) -> Sender:
    from pushstream.providers.apns.client import ApnsSender

    return ApnsSender(settings, max_in_flight=max_in_flight)


def _fcm(settings: Any, max_in_flight: int | None) -> Sender:
    from pushstream.providers.fcm.client import FcmSender

    return FcmSender(settings, max_in_flight=max_in_flight)


def _webpush(settings: Any, max_in_flight: int | None) -> Sender:
    from pushstream.providers.webpush.client import WebPushSender

    return WebPushSender(settings, max_in_flight=max_in_flight)


SENDERS: Mapping[str, Callable[[Any, int | None], Sender]] = MappingProxyType({
    Platform.APNS: _apns,
    Platform.FCM: _fcm,
    Platform.WEBPUSH: _webpush,
})


def create(platform: str, settings: Any, *, max_in_flight: int | None = None) -> Sender:
    """A new, not yet started sender for one app's platform settings.

    ``max_in_flight`` caps concurrent sends (default: the client's own, from its connection count).
    """
    build = SENDERS.get(platform)
    if build is None:
        raise ValueError(f"unknown platform {platform!r}")
    return build(settings, max_in_flight)
