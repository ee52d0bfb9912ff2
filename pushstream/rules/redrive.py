"""Which dead letters `pushstream dlq redrive` re-publishes, and as what: pure decisions over plain values.

A dead letter of a delivery (written by a sender: its value holds one device's redacted item and its source is
the delivery or retry record the sender read) is re-sent from that source record, which still holds the device's
address: the dead letter itself keeps only a fingerprint. Letters of the same source record and reason become
one delivery batch whose ``batch_id`` follows from them (``redrive/<source>/<reason>``), so running the redrive
again, or after a crash half-way, re-publishes the same batch id and the senders' sent memory sends it once.

A device the router dead-lettered (``platform_not_configured``, ``payload_too_large``: fixed by adding the
provider section or shortening the notification) is routed again from its source intent, which holds the
notification: an intent for just those devices (``IntentBatch.devices``) with the origin
``redrive/<source>/<reason>``. The router remembers per user the origin a notification came from and routes
an origin once, and the delivery batch ids follow from the origin, so this too happens once however often
the redrive runs.

Every other dead letter (malformed input, a batch that could not be decoded) is counted and left alone:
re-publishing it would fail the same way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

REDRIVEN = "redriven"
# How a redriven letter is re-sent: from the delivery batch a sender read, or from the intent the router read.
VIA_DELIVERY = "delivery"
VIA_INTENT = "intent"
NOT_A_DELIVERY = "not_a_delivery"
FILTERED = "filtered"


@dataclass(frozen=True, slots=True)
class Source:
    """The record a sender read when it gave up on the device: where to find the device's address again."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Choice:
    """What to do with one dead letter: ``kind`` is REDRIVEN (with source, group and device), FILTERED or
    NOT_A_DELIVERY."""

    kind: str
    reason: str
    source: Source | None = None
    user_id: str | None = None
    device_id: str | None = None
    via: str = VIA_DELIVERY


def reason_matches(reason: str, wanted: str | None) -> bool:
    """``--reason R``: the exact reason, or its class before ``:`` (``retries_exhausted`` matches
    ``retries_exhausted:ServiceUnavailable``)."""
    return wanted is None or reason == wanted or reason.split(":", 1)[0] == wanted


def parse_at(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def choose(letter: dict[str, Any], *, delivery_topics: frozenset[str] | set[str],
           intent_topics: frozenset[str] | set[str] = frozenset(), reason: str | None = None,
           since: dt.datetime | None = None) -> Choice:
    """The decision for one decoded DLQ record. ``delivery_topics`` are the broker-side names of the delivery
    and retry topics (a letter whose source is one of them came from a sender), ``intent_topics`` those of the
    intents topics (a letter from the router about one device)."""
    why = str(letter.get("reason") or "")
    if not reason_matches(why, reason):
        return Choice(FILTERED, why)
    if since is not None:
        at = parse_at(letter.get("at"))
        if at is None or at < since:
            return Choice(FILTERED, why)
    topic, partition, offset = letter.get("topic"), letter.get("partition"), letter.get("offset")
    from_intent = topic in intent_topics
    if not (from_intent or topic in delivery_topics) or not isinstance(partition, int) \
            or not isinstance(offset, int):
        return Choice(NOT_A_DELIVERY, why)
    try:
        value = orjson.loads(letter.get("value") or b"") if letter.get("value_encoding", "utf-8") == "utf-8" else None
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if from_intent:
        item = value if isinstance(value, dict) and value.get("notification_id") else None
    else:
        item = value.get("item") if isinstance(value, dict) else None
    if not isinstance(item, dict) or not item.get("device_id") or not item.get("user_id"):
        return Choice(NOT_A_DELIVERY, why)
    return Choice(REDRIVEN, why, Source(str(topic), partition, offset), str(item["user_id"]),
                  str(item["device_id"]), VIA_INTENT if from_intent else VIA_DELIVERY)


def redrive_batch_id(source: Source, reason: str) -> str:
    return f"redrive/{source.topic}:{source.partition}:{source.offset}/{reason}"


def redrive_batch(source_batch: dict[str, Any], source: Source, reason: str,
                  devices: set[tuple[str, str]]) -> dict[str, Any] | None:
    """The delivery batch that re-sends ``devices`` (user_id, device_id) of the source batch: their items with
    the addresses the source holds, a first attempt again (the retries start over), due now. None when the
    source holds none of them."""
    items = [item for item in source_batch.get("items") or ()
             if isinstance(item, dict) and (item.get("user_id"), item.get("device_id")) in devices]
    if not items:
        return None
    return {**source_batch, "items": items, "attempt": 1, "not_before": None,
            "batch_id": redrive_batch_id(source, reason)}


def redrive_intent(source_intent: dict[str, Any], source: Source, reason: str,
                   devices: set[tuple[str, str]]) -> dict[str, Any] | None:
    """The intent that routes ``devices`` (user_id, device_id) of the source intent's notification again: only
    those devices, under an origin that follows from the dead letters. None when the source is no intent."""
    notification = source_intent.get("notification")
    if not isinstance(notification, dict) or not devices:
        return None
    per_user: dict[str, list[str]] = {}
    for user_id, device_id in sorted(devices):
        per_user.setdefault(user_id, []).append(device_id)
    return {"notification": notification, "user_ids": sorted(per_user), "broadcast": False,
            "origin": redrive_batch_id(source, reason), "devices": per_user}
