"""`pushstream.engagement`: what apps report back about notifications (contract §1). Only `opened` so far."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pushstream.config import Settings
from pushstream.models.base import Fields, Invalid, at_millis
from pushstream.models.registry import known_app

ENGAGEMENT_TYPES = ("opened",)
_FIELDS = frozenset({"type", "app_id", "notification_id", "user_id", "device_id", "at"})


@dataclass(frozen=True)
class OpenItem:
    """One `opened` event (the internal `progress` topic carries these as lists, see `as_list`)."""

    app_id: str
    notification_id: str
    user_id: str
    device_id: str
    at_ms: int

    def as_list(self) -> list[Any]:
        return [self.app_id, self.notification_id, self.user_id, self.device_id, self.at_ms]

    @classmethod
    def from_list(cls, raw: list[Any]) -> OpenItem:
        return cls(*raw)


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
