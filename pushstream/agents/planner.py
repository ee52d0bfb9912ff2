"""Planner: validate notification requests and fan each out to the partitions that hold its users.

One intent record per (notification, partition): the router of that partition does every lookup locally.
"""

from __future__ import annotations

import datetime as dt
import time

import orjson
from faust.types import EventT, StreamT

from pushstream import metrics
from pushstream.agents.io import Context, Outbox, event_batches, message_time
from pushstream.models import IntentBatch, NotificationRequest, ScheduleCommands
from pushstream.models.base import Invalid, iso
from pushstream.models.inputs import CancelRequest, decode_notification
from pushstream.models.internal import add_command
from pushstream.rules.audit import audit_record, request_id_of
from pushstream.rules.keys import by_partition, user_key


def plan(ctx: Context, request: NotificationRequest, origin: str, outbox: Outbox, now: float) -> None:
    """Add the intents of one validated request to the outbox, or to the schedule when send_at is ahead."""
    notification = request.asdict()
    partitions = ctx.rt.layout.user_partitions
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
            outbox.add(ctx.topics.schedule, command, key=key, partition=partition)
        else:
            outbox.add(ctx.topics.intents[request.lane], intent, key=key, partition=partition)


def send_at_epoch(send_at: str | None) -> float | None:
    if send_at is None:
        return None
    return dt.datetime.fromisoformat(send_at.replace("Z", "+00:00")).timestamp()


def plan_cancel(ctx: Context, app_id: str, notification_id: str, origin: str, at: float, outbox: Outbox) -> None:
    """A cancel goes to every user partition (whichever of them route or schedule the notification), on the
    transactional lane so it never queues behind the broadcast it stops; each router remembers it."""
    to, key = ctx.topics.intents["transactional"], f"{app_id}/{notification_id}"
    cancel = {"app_id": app_id, "id": notification_id, "at": at}
    for partition in range(ctx.rt.layout.user_partitions):
        outbox.add(to, IntentBatch(notification=cancel, cancel=True, origin=origin), key=key, partition=partition)


def audit_kafka_request(ctx: Context, event: EventT, request: NotificationRequest, outbox: Outbox) -> None:
    """The audit record of a request published straight to Kafka. One the HTTP API accepted carries its
    request id header and was audited by the HTTP handler, with the caller's key fingerprint and address."""
    if request_id_of(event.message.headers) is not None:
        return
    record = audit_record(notification_id=request.id, app_id=request.app_id, target=request.target,
                          at=iso(dt.datetime.fromtimestamp(request.received_at, dt.UTC)), via="kafka")
    outbox.add(ctx.topics.audit, orjson.dumps(record), key=request.id)


def plan_batch(ctx: Context, events: list[EventT], outbox: Outbox) -> None:
    settings = ctx.rt.settings
    for event in events:
        try:
            message = event.message
            origin = f"{message.topic}:{message.partition}:{message.offset}"
            request = decode_notification(message.value, settings, received_at=message_time(event))
            if isinstance(request, CancelRequest):
                plan_cancel(ctx, request.app_id, request.id, origin, message_time(event), outbox)
                continue
            plan(ctx, request, origin, outbox, time.time())
            audit_kafka_request(ctx, event, request, outbox)
        except Invalid as error:
            outbox.dead_letter(event, error, "notification")
        except Exception as error:  # never crash on input
            outbox.dead_letter(event, Invalid("internal_error", repr(error)), "notification")


def register(ctx: Context) -> None:
    pipeline = ctx.rt.settings.pipeline

    async def planner(stream: StreamT) -> None:
        async for events in event_batches(stream, pipeline.ingest_batch, pipeline.planner_within_seconds):
            with metrics.batch_seconds.labels("planner").time():
                metrics.records_in.labels("notification").inc(len(events))
                outbox = ctx.outbox()
                plan_batch(ctx, list(events), outbox)
                await outbox.flush()

    ctx.app.agent(ctx.topics.notifications_in, name="pushstream.planner")(planner)
