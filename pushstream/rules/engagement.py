"""Opens in campaign progress: each (notification, device) counted once, however often the app reports it.

Pure: the progress agent reads the document and the users' opened devices, calls `apply_opens`, writes the
document first and then the opened sets (the same order, and for the same reason, as `rules.progress`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pushstream.models.engagement import OpenItem as OpenItem
from pushstream.rules.progress import new_document


@dataclass
class OpensUpdate:
    doc: dict[str, Any]
    # user_id → the sorted ids of that user's devices that opened the notification, only for changed users
    users: dict[str, list[str]] = field(default_factory=dict)


def apply_opens(doc: dict[str, Any] | None, opened: Mapping[str, list[str] | None], items: Iterable[OpenItem],
                *, offset: int, app_id: str, notification_id: str,
                variant_of: Callable[[str, str], str | None] | None = None) -> OpensUpdate:
    """Count the first open of each device. ``opened`` holds the devices already counted for (at least) every
    user in ``items``. A document that already counted the batch at ``offset`` (``opens_applied``) keeps its
    counts while the opened sets are still brought up to date, so a crash between the two writes neither loses
    nor doubles an open. ``variant_of(user_id, device_id)`` names the device's variant, when it has one."""
    current = doc or new_document(app_id, notification_id)
    counting = current.get("opens_applied", -1) < offset
    out = {**current, "opened": current.get("opened", 0),
           "opened_by_variant": dict(current.get("opened_by_variant") or {})}
    changed: dict[str, set[str]] = {}
    for item in items:
        devices = changed.get(item.user_id)
        if devices is None:
            devices = set(opened.get(item.user_id) or ())
        if item.device_id in devices:
            continue
        devices.add(item.device_id)
        changed[item.user_id] = devices
        if counting:
            out["opened"] += 1
            variant = variant_of(item.user_id, item.device_id) if variant_of is not None else None
            if variant is not None:
                out["opened_by_variant"][variant] = out["opened_by_variant"].get(variant, 0) + 1
    if counting:
        out["opens_applied"] = offset
    if not out["opened_by_variant"]:
        out.pop("opened_by_variant")
    return OpensUpdate(doc=out, users={user: sorted(devices) for user, devices in changed.items()})
