"""Dead letters counted by app and reason, for `GET /v1/apps/{app}/dlq` and the /ui page. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson


def count_dead_letters(doc: dict[str, Any] | None, items: Iterable[tuple[str, int, int]]) -> dict[str, Any]:
    """One app's dead-letter counts by reason, given (reason, DLQ partition, offset) items in offset order per
    partition. Each DLQ record counts once: an item at or below the partition's highest counted offset (a
    repartitioning batch sent again after a crash) is skipped."""
    out = {"by_reason": dict((doc or {}).get("by_reason", {})), "seen": dict((doc or {}).get("seen", {}))}
    for reason, partition, offset in items:
        key = str(partition)
        if offset <= out["seen"].get(key, -1):
            continue
        out["seen"][key] = offset
        out["by_reason"][reason] = out["by_reason"].get(reason, 0) + 1
    return out


def dead_letter_app(letter: Any) -> str | None:
    """The app a dead letter (models.dlq.DeadLetter as a dict) is about, when its original value names one."""
    if not isinstance(letter, dict) or letter.get("value_encoding", "utf-8") != "utf-8":
        return None
    value = letter.get("value")
    if not isinstance(value, str):
        return None
    try:
        original = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(original, dict):
        return None
    app_id = original.get("app_id")
    if app_id is None and isinstance(original.get("notification"), dict):
        app_id = original["notification"].get("app_id")  # an intent batch
    return app_id if isinstance(app_id, str) and app_id else None
