"""The records one sender poll writes, as plain values: what `rules.settle` decided, keyed and placed.

A sender settles every batch of a poll (`rules.settle.settle`), then writes all of it in one Kafka transaction.
`poll_records` turns those settlements into the (topic, key, value, partition) records of that transaction, in
the order they are written: per batch its statuses, its retry and held batches, its dead letters and its
sent-memory entry; then the poll's deactivations as user events and its statuses as campaign progress.
Nothing here touches Kafka: the topic names, partition counts and ``now`` come in (a dead letter's own ``at`` is
stamped by `models.dlq.dead_letter`, as everywhere).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pushstream.models import DeliveryBatch, UserEvents, encode
from pushstream.models.dlq import dead_letter
from pushstream.models.internal import ProgressBatch
from pushstream.rules.keys import by_partition, partition_for, user_key
from pushstream.rules.progress import progress_items_by_partition
from pushstream.rules.retry import RETRY_BANDS, band_for
from pushstream.rules.settle import Settlement

Record = tuple[str, bytes | None, bytes, int | None]  # topic, key, value, partition (None: the partitioner's)


@dataclass(frozen=True, slots=True)
class PollTopics:
    """Where a sender lane's outcomes go: full topic names (prefix applied) and partition counts.

    ``retry`` maps (platform, delay band) to the band's retry topic of this lane and its partition count."""

    status: str
    status_partitions: int
    dlq: str
    sent: str
    sent_partitions: int
    progress: str
    user_events: str
    user_partitions: int
    retry: Mapping[tuple[str, int], tuple[str, int]]


@dataclass(frozen=True, slots=True)
class SettledBatch:
    """One settled batch of a poll and the record it came from (the source of its dead letters)."""

    topic: str
    partition: int
    offset: int
    batch_id: str
    batch: DeliveryBatch
    outcome: Settlement


def poll_records(settled: Sequence[SettledBatch], topics: PollTopics, *, now: float) -> list[Record]:
    """Every record of one poll's transaction. ``now`` is when the answers came: a held batch waits in the
    band of its remaining hold."""
    records: list[Record] = []
    for entry in settled:
        batch_records(records, entry, topics, now=now)
    records.extend(user_event_records((d for e in settled for d in e.outcome.deactivations), topics))
    records.extend(progress_records((e.outcome.statuses for e in settled), topics))
    return records


def batch_records(records: list[Record], entry: SettledBatch, topics: PollTopics, *, now: float) -> None:
    """Append one settled batch's records: statuses, retry, held batch, dead letters, sent-memory entry."""
    dumps = orjson.dumps
    status_topic, partitions = topics.status, topics.status_partitions
    outcome = entry.outcome
    placed: dict[str, tuple[bytes, int]] = {}  # user → key and partition: a user's devices share them
    for status in outcome.statuses:
        user_id = status["user_id"]
        where = placed.get(user_id)
        if where is None:
            # Kafka's default partitioner, computed here so the records can be appended to batches.
            where = placed[user_id] = (user_id.encode(), partition_for(user_id, partitions))
        records.append((status_topic, where[0], dumps(status), where[1]))
    if outcome.retry is not None:
        # The retry waits in its delay band's topic, so it never queues behind a longer wait.
        records.append(retry_record(outcome.retry, outcome.retry_band or RETRY_BANDS[0], topics))
    if outcome.held is not None:  # held back by a breaker, the guard or a rate limit: the same retry path
        wait = max(0.0, (outcome.held.not_before or 0.0) - now)
        records.append(retry_record(outcome.held, band_for(wait), topics))
    for key, reason, detail, value in outcome.dead_letters:
        letter = dead_letter(reason, detail, topic=entry.topic, partition=entry.partition, offset=entry.offset,
                             key=key.encode(), value=dumps(value))
        records.append((topics.dlq, key.encode(), encode(letter), None))
    records.append((topics.sent, entry.batch_id.encode(), b"1", entry.partition % topics.sent_partitions))


def retry_record(batch: DeliveryBatch, band: int, topics: PollTopics) -> Record:
    """A retry (or held) batch on its band's retry topic, keyed and placed by app/notification id."""
    name, partitions = topics.retry[(batch.platform, band)]
    key = f"{batch.app_id}/{batch.notification_id}"
    return (name, key.encode(), encode(batch), partition_for(key, partitions))


def user_event_records(deactivations: Iterable[dict[str, Any]], topics: PollTopics) -> list[Record]:
    """Deactivations for the registry: one `UserEvents` record per user partition (by app/user)."""
    grouped = by_partition(deactivations, lambda e: user_key(e["app_id"], e["user_id"]), topics.user_partitions)
    return [(topics.user_events, f"user-events/{p}".encode(), encode(UserEvents(events=events)), p)
            for p, events in grouped.items()]


def progress_records(statuses: Iterable[Iterable[dict[str, Any]]], topics: PollTopics) -> list[Record]:
    """Campaign progress of a poll's statuses: one `ProgressBatch` per progress partition (by app/notification
    id), in the same transaction, so progress never re-reads the status stream."""
    grouped = progress_items_by_partition((status for batch in statuses for status in batch), topics.user_partitions)
    return [(topics.progress, f"progress/{p}".encode(), encode(ProgressBatch(items=items)), p)
            for p, items in grouped.items()]
