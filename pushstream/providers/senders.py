"""Sender construction: the one place that maps a platform to its client class."""

from __future__ import annotations

from typing import Any

from pushstream.providers.outcome import Sender


def create(platform: str, settings: Any) -> Sender:
    """A new, not yet started sender for one app's platform settings (clients import lazily: heavy deps)."""
    if platform == "apns":
        from pushstream.providers.apns.client import ApnsSender

        return ApnsSender(settings)
    if platform == "fcm":
        from pushstream.providers.fcm.client import FcmSender

        return FcmSender(settings)
    if platform == "webpush":
        from pushstream.providers.webpush.client import WebPushSender

        return WebPushSender(settings)
    raise ValueError(f"unknown platform {platform!r}")
