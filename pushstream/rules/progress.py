"""Campaign progress: status records → one progress document per notification (contract §4), and the latest
status of every device it reached. Pure: the progress agent reads a batch, calls `apply_statuses`, writes.

A device counts once, by its latest status:
- later `at` wins (milliseconds); at the same millisecond a final status beats a non-final one, otherwise the
  status already known stays (so a record seen twice changes nothing);
- ``suppressed``/``duplicate`` (the same notification id published again) never replaces a status the device
  already has: it says the device got this notification before, not what became of it; any other record
  replaces it.

`targeted` counts the devices with at least one status record; `pending` those of them without a final one
(``deferred``, ``retrying``). Replaying records is harmless: the same records give the same latest statuses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pushstream.models.base import Invalid, at_millis, iso
from pushstream.models.status import FINAL_STATUSES, Status

# One letter per status in the per-device entries: they are stored once per device of every campaign.
CODES: dict[str, str] = {
    Status.DELIVERED: "d", Status.INVALID_TOKEN: "i", Status.FAILED: "f", Status.SUPPRESSED: "s",
    Status.DEFERRED: "q", Status.RETRYING: "r", Status.DEAD_LETTERED: "x",
}
STATUS_OF_CODE = {code: status for status, code in CODES.items()}
FINAL_CODES = frozenset(CODES[s] for s in FINAL_STATUSES)
SUPPRESSED = CODES[Status.SUPPRESSED]
DUPLICATE = "duplicate"

# A device's latest status: [code, at_ms] or, when suppressed, [code, at_ms, reason].
Entry = list[Any]
# device_id → Entry, per user of one notification; under VARIANT_KEY the user's A/B variant, when it has one
UserEntries = dict[str, Any]
VARIANT_KEY = ""  # never a device id (they are non-empty): where a user's entries keep the user's variant


class StatusItem(NamedTuple):
    """The part of a status record progress needs (the internal `progress` topic carries these as lists).
    A named tuple: the progress agent builds one per device of every campaign, and a tuple is the cheapest
    object to build from the list it arrives as."""

    app_id: str
    notification_id: str
    user_id: str
    device_id: str
    code: str
    at_ms: int
    reason: str | None = None
    variant: str | None = None  # the A/B variant of the user (rules.variants), when the notification has them

    def as_list(self) -> list[Any]:
        raw = [self.app_id, self.notification_id, self.user_id, self.device_id, self.code, self.at_ms, self.reason]
        return raw if self.variant is None else [*raw, self.variant]

    @classmethod
    def from_list(cls, raw: list[Any]) -> StatusItem:
        return cls(*raw)


def parse_status(data: Any) -> StatusItem:
    """A status record (contract §2) as a StatusItem; `Invalid` when it lacks what progress needs."""
    if not isinstance(data, dict):
        raise Invalid("bad_json", "a status record is a JSON object")
    values = []
    for name in ("app_id", "notification_id", "user_id", "device_id", "status", "at"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise Invalid("missing_field", f"{name!r} must be a non-empty string")
        values.append(value)
    app_id, notification_id, user_id, device_id, status, at = values
    code = CODES.get(status)
    if code is None:
        raise Invalid("bad_field", f"unknown status {status!r}")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise Invalid("bad_field", "'reason' must be a string or null")
    variant = data.get("variant")
    return StatusItem(app_id, notification_id, user_id, device_id, code, at_millis(at),
                      reason if code == SUPPRESSED else None, variant if isinstance(variant, str) else None)


def status_items_of(statuses: Iterable[dict[str, Any]]) -> list[StatusItem]:
    """The StatusItems of status records pushstream itself just built (one per device): its writers hand them
    to progress directly instead of progress re-reading the whole status stream. A record progress cannot use
    is left out (it would be skipped on the status stream too)."""
    items: list[StatusItem] = []
    millis: dict[str, int] = {}  # a batch's records share their `at`
    for status in statuses:
        try:
            at = status["at"]
            ms = millis.get(at)
            if ms is None:
                ms = millis[at] = at_millis(at)
            code = CODES[status["status"]]
            variant = status.get("variant")
            items.append(StatusItem(status["app_id"], status["notification_id"], status["user_id"],
                                    status["device_id"], code, ms,
                                    status.get("reason") if code == SUPPRESSED else None,
                                    variant if isinstance(variant, str) else None))
        except (KeyError, TypeError, AttributeError, Invalid):
            continue
    return items


def progress_items_by_partition(statuses: Iterable[dict[str, Any]], partitions: int) -> dict[int, list[list[Any]]]:
    """Status records just written, as `ProgressBatch` items per progress partition (by app/notification id):
    what each status writer (a sender's poll, a router step) hands to progress.

    The items are `StatusItem.as_list` of `status_items_of`, built straight as lists: this runs once per
    delivery in the senders, and a poll's records share their notification (one partition lookup) and `at`.
    """
    from pushstream.rules.keys import partition_for

    grouped: dict[int, list[list[Any]]] = {}
    targets: dict[tuple[str, str], list[list[Any]]] = {}
    millis: dict[str, int] = {}
    for status in statuses:
        try:
            app_id, notification_id = status["app_id"], status["notification_id"]
            at = status["at"]
            ms = millis.get(at)
            if ms is None:
                ms = millis[at] = at_millis(at)
            code = CODES[status["status"]]
            item = [app_id, notification_id, status["user_id"], status["device_id"], code, ms,
                    status.get("reason") if code == SUPPRESSED else None]
            target = targets.get((app_id, notification_id))
            if target is None:
                partition = partition_for(f"{app_id}/{notification_id}", partitions)
                target = targets[(app_id, notification_id)] = grouped.setdefault(partition, [])
        except (KeyError, TypeError, AttributeError, Invalid):
            continue
        variant = status.get("variant")
        if isinstance(variant, str):
            item.append(variant)
        target.append(item)
    return grouped


def supersedes(item: StatusItem, entry: Entry | None) -> bool:
    """Whether ``item`` is the device's new latest status, given its current ``entry``."""
    if entry is None:
        return True
    is_duplicate = item.code == SUPPRESSED and item.reason == DUPLICATE
    entry_duplicate = entry[0] == SUPPRESSED and len(entry) > 2 and entry[2] == DUPLICATE
    if is_duplicate:
        return False
    if entry_duplicate:
        return True
    return (item.at_ms, item.code in FINAL_CODES) > (entry[1], entry[0] in FINAL_CODES)


def new_document(app_id: str, notification_id: str) -> dict[str, Any]:
    return {"app_id": app_id, "id": notification_id, "targeted": 0, "final": 0, "by_status": {},
            "suppressed_by_reason": {}, "first_ms": None, "last_ms": None, "applied": -1}


def _count(counts: dict[str, int], key: str, delta: int) -> None:
    value = counts.get(key, 0) + delta
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


@dataclass
class ProgressUpdate:
    doc: dict[str, Any]
    # user_id → that user's entries, only for users whose entries changed
    users: dict[str, UserEntries] = field(default_factory=dict)


def apply_statuses(doc: dict[str, Any] | None, users: Mapping[str, UserEntries | None],
                   items: Iterable[StatusItem], *, offset: int, app_id: str,
                   notification_id: str) -> ProgressUpdate:
    """Apply one batch of one notification's status records to its document and devices' latest statuses.

    ``users`` holds the current entries of (at least) every user in ``items``. ``offset`` is the batch's
    position on its input partition: a document that has already counted that batch (``applied`` ≥ offset, a
    replay after a crash between writing the document and the entries) keeps its counts, while the entries are
    still brought up to date, so the document is written before the entries and a crash between them neither
    loses nor doubles a device.
    """
    current = doc or new_document(app_id, notification_id)
    counting = current["applied"] < offset
    out = {**current, "by_status": dict(current["by_status"]),
           "suppressed_by_reason": dict(current["suppressed_by_reason"])}
    if "variants" in current:
        out["variants"] = {v: dict(counts) for v, counts in current["variants"].items()}
    changed: dict[str, UserEntries] = {}
    # Net changes per status code (and suppression reason), applied once at the end: the same counts as
    # tallying each device's old and new entry, at one dict update per device instead of several.
    codes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    targeted = 0
    first_ms, last_ms = out["first_ms"], out["last_ms"]
    for item in items:
        user_id, device_id, code, at_ms = item.user_id, item.device_id, item.code, item.at_ms
        entries = changed.get(user_id)
        if entries is None:
            entries = dict(users.get(user_id) or {})
        old = entries.get(device_id)
        if counting:
            if first_ms is None or at_ms < first_ms:
                first_ms = at_ms
            if last_ms is None or at_ms > last_ms:
                last_ms = at_ms
        if not supersedes(item, old):
            continue
        new = [code, at_ms, item.reason] if code == SUPPRESSED else [code, at_ms]
        if new == old:
            continue
        if counting:
            if old is None:
                targeted += 1
            else:
                old_code = old[0]
                codes[old_code] = codes.get(old_code, 0) - 1
                if old_code == SUPPRESSED:
                    reason = old[2] if len(old) > 2 and old[2] else "unknown"
                    reasons[reason] = reasons.get(reason, 0) - 1
            codes[code] = codes.get(code, 0) + 1
            if code == SUPPRESSED:
                reason = item.reason or "unknown"
                reasons[reason] = reasons.get(reason, 0) + 1
            if item.variant is not None:
                tally_variant(out, item.variant, old, new)
        entries[device_id] = new
        if item.variant is not None:
            entries[VARIANT_KEY] = item.variant  # for the opens of this user's devices (`variant_of_user`)
        changed[user_id] = entries
    if counting:
        out["applied"] = offset
        out["first_ms"], out["last_ms"] = first_ms, last_ms
        out["targeted"] += targeted
        by_status = out["by_status"]
        for code, delta in codes.items():
            if delta:
                _count(by_status, STATUS_OF_CODE[code], delta)
                if code in FINAL_CODES:
                    out["final"] += delta
        for reason, delta in reasons.items():
            if delta:
                _count(out["suppressed_by_reason"], reason, delta)
    return ProgressUpdate(doc=out, users=changed)


def tally_variant(doc: dict[str, Any], variant: str, old: Entry | None, new: Entry) -> None:
    """Per A/B variant: devices targeted and delivered (a user's devices all share the user's variant, so a
    device's old and new status belong to the same one)."""
    counts = doc.setdefault("variants", {}).setdefault(variant, {"targeted": 0, "delivered": 0})
    delivered = CODES[Status.DELIVERED]
    if old is None:
        counts["targeted"] += 1
    counts["delivered"] += (new[0] == delivered) - (old is not None and old[0] == delivered)


def variant_of_user(entries: UserEntries | None) -> str | None:
    """The A/B variant recorded with a user's entries (None: no status of a variant notification yet)."""
    variant = (entries or {}).get(VARIANT_KEY)
    return variant if isinstance(variant, str) else None


def variants_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The progress document's ``variants`` (contract §4): targeted, delivered and opened per variant."""
    opened = doc.get("opened_by_variant") or {}
    return {v: {"targeted": c["targeted"], "delivered": c["delivered"], "opened": opened.get(v, 0)}
            for v, c in sorted(doc.get("variants", {}).items())}


def progress_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The contract's progress document (§4). Opens come from `rules.engagement.apply_opens`; ``open_rate`` is
    opens per delivered device (None before a delivery); per variant, opens are counted by the variant kept
    with the user's entries (`variant_of_user`)."""
    pending = doc["targeted"] - doc["final"]
    opened = doc.get("opened", 0)
    delivered = doc["by_status"].get(Status.DELIVERED, 0)
    return {
        "id": doc["id"], "app_id": doc["app_id"], "targeted": doc["targeted"],
        "by_status": dict(sorted(doc["by_status"].items())),
        "suppressed_by_reason": dict(sorted(doc["suppressed_by_reason"].items())),
        "pending": pending, "opened": opened,
        "open_rate": round(opened / delivered, 4) if delivered else None,
        "done": doc["targeted"] > 0 and pending == 0, "variants": variants_document(doc),
        "first_at": _iso_ms(doc["first_ms"]), "last_at": _iso_ms(doc["last_ms"]),
    }


def _iso_ms(ms: int | None) -> str | None:
    return None if ms is None else iso(dt.datetime.fromtimestamp(ms / 1000, dt.UTC))
