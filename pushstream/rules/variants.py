"""A/B variants: which variant a user gets, and the notification that variant renders.

The assignment is a pure function of the notification id and the user id: every partition, replay, crash
repeat or quiet-hours re-delivery gives a user the same variant, in proportion to the weights.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from typing import Any


class VariantPicker:
    """Picks a variant id per user: a 64-bit hash of (notification id, user id) into the cumulative weights."""

    def __init__(self, notification_id: str, variants: list[dict[str, Any]]) -> None:
        self.prefix = notification_id.encode("utf-8") + b"\0"
        self.ids = [v["id"] for v in variants]
        self.bounds = list(itertools.accumulate(int(v["weight"]) for v in variants))
        self.total = self.bounds[-1]

    def pick(self, user_id: str) -> str:
        digest = hashlib.blake2b(self.prefix + user_id.encode("utf-8"), digest_size=8).digest()
        point = int.from_bytes(digest, "big") % self.total
        return self.ids[bisect.bisect_right(self.bounds, point)]


def assign_variant(notification_id: str, user_id: str, variants: list[dict[str, Any]]) -> str:
    return VariantPicker(notification_id, variants).pick(user_id)


def variant_notification(notification: dict[str, Any], variant_id: str) -> dict[str, Any]:
    """The notification as one variant renders it: the variant's title, body and localized texts, each falling
    back to the request's own when the variant does not give it."""
    variant = next(v for v in notification["variants"] if v["id"] == variant_id)
    out = {k: v for k, v in notification.items() if k != "variants"}
    for key in ("title", "body", "localized"):
        if key in variant:
            out[key] = variant[key]
    return out
