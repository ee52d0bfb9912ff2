"""Campaign progress and dead-letter counts, off the delivery path: the router reads its own output.

- `progress_feed` takes batches of `pushstream.status` (keyed by user), keeps what progress needs and re-keys it
  by app/notification id: one `ProgressBatch` per partition on `pushstream.progress`.
- `progress` applies each batch to the `progress` table (`rules.progress.apply_statuses`): the document of
  each notification is written before its devices' entries (see the rule for why that order).
- `engagement_feed` validates `pushstream.engagement` (bad events to the DLQ with a reason) and re-keys the opens
  the same way; `progress` counts each device's first open (`rules.engagement.apply_opens`).
- `dlq_feed` and `dlq_counts` do the same for `pushstream.dlq`: counts per app and reason.

Status records and dead letters are pushstream's own output: a malformed one is skipped with a log line, never
dead-lettered again (a dead letter about a dead letter could loop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from faust.types import EventT, StreamT, TableT

from pushstream import metrics
from pushstream.agents.io import Context, Outbox, event_batches
from pushstream.models import decode
from pushstream.models.base import Invalid
from pushstream.models.inputs import decode_engagement
from pushstream.models.internal import DeadLetterCounts, ProgressBatch
from pushstream.rules.dead_letters import count_dead_letters, dead_letter_app
from pushstream.rules.engagement import OpenItem, apply_opens
from pushstream.rules.keys import by_partition
from pushstream.rules.progress import StatusItem, apply_statuses, variant_of_user
from pushstream.tables import progress_device_key, progress_opened_key, table_key
from pushstream.tables.batch import LocalTable, write_partition

log = logging.getLogger(__name__)


def _skip(what: str, event: EventT, why: object) -> None:
    message = event.message
    log.warning("%s: skipped malformed record %s[%d]@%d: %s", what, message.topic, message.partition,
                message.offset, why)


def dead_letter_items(events: list[EventT], known_app: Callable[[str], bool]) -> list[list[Any]]:
    """[app_id, reason, dlq partition, offset] of the dead letters that name a configured app."""
    items = []
    for event in events:
        try:
            letter = orjson.loads(event.message.value or b"")
            app_id = dead_letter_app(letter)
            reason = letter.get("reason") if isinstance(letter, dict) else None
        except Exception as exc:
            _skip("dlq_feed", event, exc)
            continue
        if not isinstance(reason, str) or not reason:
            _skip("dlq_feed", event, "no reason")
            continue
        if app_id is not None and known_app(app_id):
            message = event.message
            items.append([app_id, reason, message.partition, message.offset])
    return items


def apply_progress(table: TableT | LocalTable, items: list[list[Any]], offset: int) -> dict[bytes, Any]:
    """What one `ProgressBatch` (of the event at ``offset`` of its partition) changes in the progress table,
    in write order: each notification's document before its device entries."""
    changes: dict[bytes, Any] = {}
    by_notification: dict[tuple[str, str], list[StatusItem]] = {}
    for raw in items:
        item = StatusItem.from_list(raw)
        by_notification.setdefault((item.app_id, item.notification_id), []).append(item)
    for (app_id, notification_id), group in by_notification.items():
        doc_key = table_key(f"{app_id}/{notification_id}")
        doc = table.get(doc_key)
        users = {i.user_id: table.get(progress_device_key(app_id, notification_id, i.user_id)) for i in group}
        update = apply_statuses(doc, users, group, offset=offset, app_id=app_id, notification_id=notification_id)
        if update.doc != doc:
            changes[doc_key] = update.doc
        for user_id, entries in update.users.items():
            changes[progress_device_key(app_id, notification_id, user_id)] = entries
    return changes


def apply_opens_batch(table: TableT | LocalTable, items: list[list[Any]], offset: int,
                      changes: dict[bytes, Any] | None = None) -> dict[bytes, Any]:
    """What the opens of one `ProgressBatch` change in the progress table, added to ``changes`` (the same
    batch's status changes, read through): each notification's document, then the opened devices of its users
    (`rules.engagement.apply_opens`)."""
    changes = {} if changes is None else changes

    def get(key: bytes) -> Any:
        return changes[key] if key in changes else table.get(key)

    by_notification: dict[tuple[str, str], list[OpenItem]] = {}
    for raw in items:
        item = OpenItem.from_list(raw)
        by_notification.setdefault((item.app_id, item.notification_id), []).append(item)
    for (app_id, notification_id), group in by_notification.items():
        doc_key = table_key(f"{app_id}/{notification_id}")
        doc = get(doc_key)
        opened = {i.user_id: get(progress_opened_key(app_id, notification_id, i.user_id)) for i in group}
        # Per A/B variant: the variant each user's entries keep (only read when the notification has variants).
        variants: dict[str, str | None] = (
            {i.user_id: variant_of_user(get(progress_device_key(app_id, notification_id, i.user_id)))
             for i in group} if doc is not None and doc.get("variants") else {})
        update = apply_opens(doc, opened, group, offset=offset, app_id=app_id, notification_id=notification_id,
                             variant_of=partial(_variant_of, variants))
        if update.doc != doc:
            changes[doc_key] = update.doc  # in place if present: the document stays before every entry
        for user_id, devices in update.users.items():
            changes[progress_opened_key(app_id, notification_id, user_id)] = devices
    return changes


def _variant_of(variants: dict[str, str | None], user_id: str, _device_id: str) -> str | None:
    return variants.get(user_id)


def engagement_items(ctx: Context, events: list[EventT], outbox: Outbox) -> list[OpenItem]:
    """The valid engagement events of a batch; the others are dead-lettered with their reason."""
    settings = ctx.rt.settings
    items = []
    for event in events:
        try:
            items.append(decode_engagement(event.message.value, settings))
        except Invalid as error:
            outbox.dead_letter(event, error, "engagement")
        except Exception as error:  # never crash on input
            outbox.dead_letter(event, Invalid("internal_error", repr(error)), "engagement")
    return items


def apply_dead_letter_counts(table: TableT, items: list[list[Any]]) -> dict[bytes, Any]:
    """What one `DeadLetterCounts` batch changes in the dlq_counts table."""
    changes: dict[bytes, Any] = {}
    by_app: dict[str, list[tuple[str, int, int]]] = {}
    for app_id, reason, partition, offset in items:
        by_app.setdefault(app_id, []).append((reason, partition, offset))
    for app_id, counted in by_app.items():
        key = table_key(app_id)
        doc = table.get(key)
        updated = count_dead_letters(doc, counted)
        if updated != doc:
            changes[key] = updated
    return changes


def register(ctx: Context) -> None:
    pipeline, topics, tables = ctx.rt.settings.pipeline, ctx.topics, ctx.tables
    partitions = ctx.rt.layout.user_partitions
    settings = ctx.rt.settings

    async def progress(stream: StreamT) -> None:
        async for event in stream.events():

            async def work(event: EventT = event) -> None:
                batch = decode(ProgressBatch, event.value)
                local = LocalTable(tables.progress, event.message.partition)
                changes = apply_progress(local, batch.items, event.message.offset)
                if batch.opens:
                    changes = apply_opens_batch(local, batch.opens, event.message.offset, changes)
                # One write batch, the changelog records in order (documents first); never Faust's per-key
                # path, whose buffer would hold every agent's next message behind a campaign's statuses.
                await write_partition(ctx.app, tables.progress, event.message.partition, changes)

            with metrics.batch_seconds.labels("progress").time():
                await ctx.guarded("progress", [event], work)

    async def engagement_feed(stream: StreamT) -> None:
        """Engagement input (keyed by user, any partitioner) validated and re-keyed like the status feed."""
        async for events in event_batches(stream, pipeline.ingest_batch, pipeline.ingest_within_seconds):
            with metrics.batch_seconds.labels("engagement_feed").time():
                metrics.records_in.labels("engagement").inc(len(events))
                outbox = ctx.outbox()
                items = engagement_items(ctx, list(events), outbox)
                grouped = by_partition(items, lambda i: f"{i.app_id}/{i.notification_id}", partitions)
                for partition, group in grouped.items():
                    outbox.add(topics.progress, ProgressBatch(items=[], opens=[i.as_list() for i in group]),
                               key=f"progress/{partition}", partition=partition)
                await outbox.flush(wait=False)

    async def dlq_feed(stream: StreamT) -> None:
        async for events in event_batches(stream, pipeline.ingest_batch, pipeline.ingest_within_seconds):
            outbox = ctx.outbox()
            items = dead_letter_items(list(events), lambda app_id: settings.app(app_id) is not None)
            for partition, group in by_partition(items, lambda i: str(i[0]), partitions).items():
                outbox.add(topics.dlq_counts, DeadLetterCounts(items=group), key=f"dlq-counts/{partition}",
                           partition=partition)
            await outbox.flush(wait=False)

    async def dlq_counts(stream: StreamT) -> None:
        async for event in stream.events():

            async def work(event: EventT = event) -> None:
                changes = apply_dead_letter_counts(tables.dlq_counts, decode(DeadLetterCounts, event.value).items)
                await write_partition(ctx.app, tables.dlq_counts, event.message.partition, changes)

            await ctx.guarded("dlq_counts", [event], work)

    ctx.app.agent(topics.progress, name="pushstream.progress")(progress)
    ctx.app.agent(topics.engagement_in, name="pushstream.engagement_feed")(engagement_feed)
    ctx.app.agent(topics.dlq, name="pushstream.dlq_feed")(dlq_feed)
    ctx.app.agent(topics.dlq_counts, name="pushstream.dlq_counts")(dlq_counts)
