"""Sender construction: the one place that maps a platform to its client class."""

from __future__ import annotations

from typing import Any

from pushstream.providers.outcome import Sender


def create(platform: str, settings: Any, *, max_in_flight: int | None = None) -> Sender:
    """A new, not yet started sender for one app's platform settings (clients import lazily: heavy deps).

    ``max_in_flight`` caps concurrent sends (default: the client's own, from its connection count).
    """
    if platform == "apns":
        from pushstream.providers.apns.client import ApnsSender

        return ApnsSender(settings, max_in_flight=max_in_flight)
    if platform == "fcm":
        from pushstream.providers.fcm.client import FcmSender

        return FcmSender(settings, max_in_flight=max_in_flight)
    if platform == "webpush":
        from pushstream.providers.webpush.client import WebPushSender

        return WebPushSender(settings, max_in_flight=max_in_flight)
    raise ValueError(f"unknown platform {platform!r}")
