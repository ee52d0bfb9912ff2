"""`pushstream.engagement`: what apps report back about notifications (contract §1). Only `opened` so far."""

from __future__ import annotations

from typing import Any

from pushstream.config import Settings
from pushstream.models.base import Fields, Invalid
from pushstream.models.registry import known_app
from pushstream.rules.engagement import OpenItem
from pushstream.rules.progress import at_millis

ENGAGEMENT_TYPES = ("opened",)
_FIELDS = frozenset({"type", "app_id", "notification_id", "user_id", "device_id", "at"})


def parse_engagement(data: dict[str, Any], settings: Settings) -> OpenItem:
    """Validate an engagement event from a producer or the HTTP API; `Invalid` names the field."""
    f = Fields(data, _FIELDS)
    if data.get("type") is None:
        raise Invalid("missing_field", "'type' is required")
    f.choice("type", ENGAGEMENT_TYPES)
    app_id, _ = known_app(settings, f)
    notification_id = f.text("notification_id", max_len=200)
    user_id = f.text("user_id")
    device_id = f.text("device_id")
    at = f.text("at", max_len=64)
    return OpenItem(app_id, notification_id, user_id, device_id, at_millis(at))
