"""Internal topics: free to change, keyed and batched by pushstream itself.

Every internal record carries a batch for one partition, so agents pay Faust's per-event cost once per batch
and table writes happen on the partition the batch arrived on.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import faust


class UserEvents(faust.Record, include_metadata=False):
    """`user-events`: registry changes for users of one partition, in order.

    Each event is a dict with ``kind``: ``device`` (a DeviceEvent), ``preference`` (a PreferenceEvent),
    ``release`` (the device's token was claimed elsewhere) or ``deactivate`` (a provider rejected the token).
    """

    events: list


class TokenClaims(faust.Record, include_metadata=False):
    """`token-claims`: {app_id, fingerprint, user_id, device_id, at} claims for one token partition."""

    claims: list


class IntentBatch(faust.Record, include_metadata=False):
    """`intents`: a notification and the users of one partition it targets (all of them when broadcast)."""

    notification: dict
    user_ids: Optional[list] = None
    broadcast: bool = False
    # The request record this intent was planned from (topic:partition:offset): replays carry the same origin.
    origin: Optional[str] = None
    # Re-delivery after quiet hours: only these devices per user, and the user's dedup memory does not stop it.
    devices: Optional[dict] = None
    # A cancel (rules.cancel): ``notification`` is then just {"app_id", "id", "at"}; the router remembers it.
    cancel: bool = False


class ScheduleCommands(faust.Record, include_metadata=False):
    """`schedule`: commands for one partition's schedule table.

    ``{"op": "add", "due": epoch_seconds, "id": str, "intent": IntentBatch dict}`` stores an intent until it
    is due; ``{"op": "fire", "keys": [...]}`` (from the worker's timer) sends the due ones to `intents`.
    """

    commands: list


def add_command(due: float, ident: str, intent: IntentBatch) -> dict[str, Any]:
    """A `ScheduleCommands` ``add`` command: keep ``intent`` under ``ident`` until ``due`` (epoch seconds)."""
    return {"op": "add", "due": due, "id": ident, "intent": intent.asdict()}


class DeliveryBatch(faust.Record, include_metadata=False):
    """`deliveries.<platform>[.bulk]`: devices of one platform for one notification, payloads rendered.

    Each item: {user_id, device_id, token | subscription, payload}.
    """

    notification_id: str
    app_id: str
    platform: str
    channel: str
    priority: str
    items: list
    expires_at: Optional[float] = None
    collapse_key: Optional[str] = None
    attempt: int = 1
    # Retries only: not to be sent before this epoch second (backoff or the provider's Retry-After).
    not_before: Optional[float] = None
    # Deterministic identity (origin, partition, routing step, platform, chunk; retries add the attempt): the
    # same batch routed again after a crash has the same id, and a sender never sends an id it settled.
    batch_id: Optional[str] = None
    # The notification's publish time (its Kafka timestamp, or send_at when scheduled), epoch seconds: the start
    # of the publish → provider-answer latency the senders export. Retries keep it.
    received_at: Optional[float] = None
    # The request's TTL in seconds. 0 is "now or never" (contract v2): sent once with a zero lifetime at the
    # provider however late it is, never retried later (``rules.delivery.dispose``).
    ttl: Optional[int] = None
    # The A/B variant every item of the batch got (rules.variants): the router batches each variant apart, so
    # the senders copy it into the statuses once per batch.
    variant: Optional[str] = None
    # Payloads the items share (`share_payloads`): an item with ``"p": i`` has ``payloads[i]`` as its payload.
    # A campaign renders one payload per platform and locale, so a batch of 500 carries it once instead of 500
    # times (half the record's bytes, and of the sender's decoding). Items may still carry their own.
    payloads: Optional[list] = None


def share_payloads(items: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """Items with their payloads moved into one shared list (by identity: the router's render cache hands every
    device of a platform and locale the same object), for a `DeliveryBatch`'s ``items`` and ``payloads``."""
    index: dict[int, int] = {}
    payloads: list[Any] = []
    shared = []
    for item in items:
        payload = item["payload"]
        i = index.get(id(payload))
        if i is None:
            i = index[id(payload)] = len(payloads)
            payloads.append(payload)
        entry = dict(item)
        del entry["payload"]
        entry["p"] = i
        shared.append(entry)
    return shared, payloads


def inline_payloads(batch: DeliveryBatch) -> DeliveryBatch:
    """The batch with every item holding its own ``payload`` again (what the senders, retries and dead letters
    use), in place: the items then share the payload objects, which nothing mutates."""
    payloads = batch.payloads
    if payloads is not None:
        for item in batch.items:
            if "p" in item:
                item["payload"] = payloads[item.pop("p")]
        batch.payloads = None
    return batch


class ProgressBatch(faust.Record, include_metadata=False):
    """`progress`: status records of one progress partition (by app/notification id), each as the list
    `rules.progress.StatusItem.as_list()`: [app_id, notification_id, user_id, device_id, code, at_ms, reason]."""

    items: list
    # `opened` engagement events of the partition, each `rules.engagement.OpenItem.as_list()`.
    opens: Optional[list] = None


class DeadLetterCounts(faust.Record, include_metadata=False):
    """`dlq-counts`: dead letters of one partition (by app id), each [app_id, reason, dlq partition, offset]."""

    items: list
