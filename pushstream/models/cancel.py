"""Cancel records on `pushstream.notifications`: `{"type": "cancel", "app_id": ..., "id": ...}`."""

from typing import Any

from pushstream.config import Settings
from pushstream.models.base import Fields, Invalid
from pushstream.models.registry import known_app

_FIELDS = frozenset({"type", "app_id", "id"})


def is_cancel(data: dict[str, Any]) -> bool:
    """Whether a record of the notifications topic is a cancel rather than a request."""
    return data.get("type") == "cancel"


def parse_cancel(data: dict[str, Any], settings: Settings) -> tuple[str, str]:
    """(app_id, notification id) of a valid cancel record."""
    if not is_cancel(data):
        raise Invalid("bad_field", "'type' of a cancel must be \"cancel\"")
    f = Fields(data, _FIELDS)
    app_id, _ = known_app(settings, f)
    return app_id, f.text("id", max_len=200)
