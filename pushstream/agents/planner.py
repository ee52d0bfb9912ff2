"""Planner: validate notification requests and fan each out to the partitions that hold its users.

One intent record per (notification, partition): the router of that partition does every lookup locally.
"""

from __future__ import annotations

from faust.types import EventT, StreamT

from pushstream import metrics
from pushstream.agents.io import Outbox, event_batches, intents, message_time, notifications_in
from pushstream.app import app, rt
from pushstream.models import IntentBatch, NotificationRequest
from pushstream.models.base import Invalid, load_json_object
from pushstream.models.notifications import parse_notification
from pushstream.rules.keys import partition_for, user_key

settings = rt.settings


def plan(request: NotificationRequest, origin: str, outbox: Outbox) -> None:
    """Add the intents of one validated request to the outbox."""
    notification = request.asdict()
    partitions = rt.layout.user_partitions
    key = f"{request.app_id}/{request.id}"
    user_ids = request.target.get("user_ids")
    if user_ids is None:
        # Segment and broadcast: every partition scans its own users.
        for partition in range(partitions):
            intent = IntentBatch(notification=notification, broadcast=True, origin=origin)
            outbox.add(intents, intent, key=key, partition=partition)
        return
    by_partition: dict[int, list[str]] = {}
    for user_id in user_ids:
        by_partition.setdefault(partition_for(user_key(request.app_id, user_id), partitions), []).append(user_id)
    for partition, users in by_partition.items():
        intent = IntentBatch(notification=notification, user_ids=users, origin=origin)
        outbox.add(intents, intent, key=key, partition=partition)


def plan_batch(events: list[EventT], outbox: Outbox) -> None:
    for event in events:
        try:
            data = load_json_object(event.message.value, max_bytes=settings.limits.max_record_bytes)
            request = parse_notification(data, settings, received_at=message_time(event))
            if request.send_at is not None:
                # Scheduling lands with the scheduler; until then a future send_at is kept, not sent early.
                raise Invalid("scheduling_not_supported", "send_at is not supported yet; redrive later")
            message = event.message
            plan(request, f"{message.topic}:{message.partition}:{message.offset}", outbox)
        except Invalid as error:
            outbox.dead_letter(event, error, "notification")
        except Exception as error:  # never crash on input
            outbox.dead_letter(event, Invalid("internal_error", repr(error)), "notification")


@app.agent(notifications_in, name="pushstream.planner")
async def planner(stream: StreamT) -> None:
    pipeline = settings.pipeline
    async for events in event_batches(stream, pipeline.ingest_batch, pipeline.ingest_within_seconds):
        with metrics.batch_seconds.labels("planner").time():
            metrics.records_in.labels("notification").inc(len(events))
            outbox = Outbox()
            plan_batch(list(events), outbox)
            await outbox.flush()
