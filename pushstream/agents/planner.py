"""Planner: validate notification requests and fan each out to the partitions that hold its users.

One intent record per (notification, partition): the router of that partition does every lookup locally.
"""

from __future__ import annotations

import datetime as dt
import time

from faust.types import EventT, StreamT

from pushstream import metrics
from pushstream.agents.io import Outbox, by_partition, event_batches, intents, message_time, notifications_in
from pushstream.agents.scheduler import add_command, schedule_topic
from pushstream.app import app, rt
from pushstream.models import IntentBatch, NotificationRequest, ScheduleCommands
from pushstream.models.base import Invalid, load_json_object
from pushstream.models.notifications import parse_notification
from pushstream.rules.keys import user_key

settings = rt.settings


def plan(request: NotificationRequest, origin: str, outbox: Outbox, now: float) -> None:
    """Add the intents of one validated request to the outbox, or to the schedule when send_at is ahead."""
    notification = request.asdict()
    partitions = rt.layout.user_partitions
    key = f"{request.app_id}/{request.id}"
    due = send_at_epoch(request.send_at)
    scheduled = due is not None and due > now
    if scheduled:
        notification["received_at"] = due  # the TTL runs from the time it is sent
    planned: list[tuple[int, IntentBatch]]
    user_ids = request.target.get("user_ids")
    if user_ids is None:
        # Segment and broadcast: every partition scans its own users.
        planned = [(p, IntentBatch(notification=notification, broadcast=True, origin=origin))
                   for p in range(partitions)]
    else:
        grouped = by_partition(user_ids, lambda user_id: user_key(request.app_id, user_id), partitions)
        planned = [(p, IntentBatch(notification=notification, user_ids=users, origin=origin))
                   for p, users in grouped.items()]
    for partition, intent in planned:
        if scheduled:
            assert due is not None
            command = ScheduleCommands(commands=[add_command(due, f"{key}/{origin}", intent)])
            outbox.add(schedule_topic, command, key=key, partition=partition)
        else:
            outbox.add(intents[request.lane], intent, key=key, partition=partition)


def send_at_epoch(send_at: str | None) -> float | None:
    if send_at is None:
        return None
    return dt.datetime.fromisoformat(send_at.replace("Z", "+00:00")).timestamp()


def plan_batch(events: list[EventT], outbox: Outbox) -> None:
    for event in events:
        try:
            data = load_json_object(event.message.value, max_bytes=settings.limits.max_record_bytes)
            request = parse_notification(data, settings, received_at=message_time(event))
            message = event.message
            plan(request, f"{message.topic}:{message.partition}:{message.offset}", outbox, time.time())
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
