"""Senders: one agent per platform and lane, plus a retry agent per platform.

Feedback happens here too: an invalid-token outcome is written as its status record and, in the same
outbox, as a `deactivate` event for the registry (reading the whole status stream back would cost every
delivery a second trip through Faust for the rare dead token).

Each agent takes a few delivery batches at once, sends every device of them concurrently through the
platform's client, and acks only when every device has an outcome: a status record, a retry batch or a
dead letter. Platforms are isolated: their own agents, clients, connection pools and retry topics.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
from faust.types import EventT, StreamT

from pushstream import metrics
from pushstream.agents.io import (
    Outbox,
    add_user_events,
    deliveries,
    dlq,
    event_batches,
    guarded,
    status_out,
    topic,
)
from pushstream.app import app, rt
from pushstream.models import DeliveryBatch, StatusEvent, decode
from pushstream.models.base import iso, utcnow
from pushstream.models.dlq import dead_letter
from pushstream.models.notifications import lane_of
from pushstream.providers import senders as provider_senders
from pushstream.providers.outcome import Sender
from pushstream.rules.delivery import Disposition, dispose
from pushstream.rules.keys import partition_for
from pushstream.rules.registry import address_fingerprint

settings = rt.settings
pipeline = settings.pipeline
PLATFORMS = ("apns", "fcm", "webpush")
retries = {platform: topic(f"pushstream.retry.{platform}") for platform in PLATFORMS}
RETRY_PARTITIONS = {platform: retries[platform].partitions or 1 for platform in PLATFORMS}


class SenderPool:
    """One started client per (app, platform), created inside the running loop on first use."""

    def __init__(self) -> None:
        self._senders: dict[tuple[str, str, str], Sender] = {}
        self._lock = asyncio.Lock()

    async def get(self, app_id: str, platform: str, lane: str) -> Sender | None:
        # One client per lane too: a campaign's thousands of queued sends must not sit in front of a
        # transactional one in the same client's in-flight limit.
        key = (app_id, platform, lane)
        sender = self._senders.get(key)
        if sender is not None:
            return sender
        async with self._lock:
            if key not in self._senders:
                app_settings = settings.app(app_id)
                platform_settings = getattr(app_settings, platform, None) if app_settings else None
                if platform_settings is None:
                    return None
                limit = pipeline.bulk_max_in_flight if lane == "bulk" else None
                sender = provider_senders.create(platform, platform_settings, max_in_flight=limit)
                await sender.start()
                self._senders[key] = sender
            return self._senders[key]

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()


pool = SenderPool()
NOT_CONFIGURED = Disposition("dead_lettered", "platform_not_configured", dead_letter=True)


async def send_batches(batches: Sequence[DeliveryBatch], outbox: Outbox) -> None:
    """Send every device of these batches and add each outcome to the outbox."""
    now = time.time()
    plans = []
    for batch in batches:
        sender = await pool.get(batch.app_id, batch.platform, lane_of(batch.channel))
        plans.append((batch, sender))

    async def send(batch: DeliveryBatch, sender: Sender | None) -> list[Any]:
        if sender is None:
            return [None] * len(batch.items)
        return list(await sender.send_batch(batch))

    results = await asyncio.gather(*(send(batch, sender) for batch, sender in plans))
    at = iso(utcnow())
    deactivations: list[dict[str, Any]] = []
    tally: Counter[tuple[str, str, str]] = Counter()
    for (batch, _), verdicts in zip(plans, results, strict=True):
        retry_items: list[dict[str, Any]] = []
        retry_at = 0.0
        for item, verdict in zip(batch.items, verdicts, strict=True):
            fingerprint = address_fingerprint(batch.platform, item)
            if verdict is None:
                disposition = NOT_CONFIGURED
            else:
                disposition = dispose(
                    verdict, attempt=batch.attempt, max_attempts=pipeline.max_attempts, now=now,
                    base=pipeline.retry_base_seconds, cap=pipeline.retry_max_seconds, expires_at=batch.expires_at)
            status, reason = disposition.status, disposition.reason
            provider_status = verdict.provider_status if verdict is not None else None
            tally[(batch.platform, status, reason or "")] += 1
            outbox.add(status_out, StatusEvent(
                notification_id=batch.notification_id, app_id=batch.app_id, user_id=item["user_id"],
                device_id=item["device_id"], platform=batch.platform, status=status, reason=reason,
                provider_status=provider_status, attempt=batch.attempt, at=at, token_fingerprint=fingerprint,
            ), key=item["user_id"])
            if disposition.deactivate:
                # Feedback: the registry deactivates the device if it still holds this token.
                deactivations.append({
                    "kind": "deactivate", "app_id": batch.app_id, "user_id": item["user_id"],
                    "device_id": item["device_id"], "fingerprint": fingerprint,
                    "reason": f"{batch.platform}:{reason or 'invalid_token'}", "at": at})
            if disposition.retry_at is not None:
                retry_items.append(item)
                retry_at = max(retry_at, disposition.retry_at)
            if disposition.dead_letter:
                # The payload stays, the address does not: the DLQ is read by people.
                redacted = {k: v for k, v in item.items() if k not in ("token", "subscription")}
                record = {"notification_id": batch.notification_id, "app_id": batch.app_id,
                          "platform": batch.platform, "attempt": batch.attempt, "item": redacted,
                          "token_fingerprint": fingerprint}
                outbox.add(dlq, dead_letter(
                    reason or "undeliverable", verdict.detail if verdict and verdict.detail else (reason or ""),
                    topic=rt.topic_name(f"pushstream.deliveries.{batch.platform}"), partition=None, offset=None,
                    key=item["user_id"].encode(), value=orjson.dumps(record)), key=item["user_id"])
        if retry_items:
            partition = partition_for(f"{batch.app_id}/{batch.notification_id}", RETRY_PARTITIONS[batch.platform])
            retry = DeliveryBatch(**{**batch.asdict(), "items": retry_items, "attempt": batch.attempt + 1,
                                     "not_before": retry_at})
            outbox.add(retries[batch.platform], retry, key=f"{batch.app_id}/{batch.notification_id}",
                       partition=partition)
    add_user_events(outbox, deactivations)
    metrics.count_statuses(tally)


async def run_sender(stream: StreamT, agent_name: str, *, wait_until_due: bool, batches_at_once: int) -> None:
    async for events in event_batches(stream, batches_at_once, 0.005):

        async def work(events: Sequence[EventT] = events) -> None:
            batches = [decode(DeliveryBatch, event.value) for event in events]
            if wait_until_due:
                # A delay queue: retries are written in due order per partition (same backoff for the same
                # attempt), so waiting for this batch's time rarely holds back one that is due earlier.
                delay = max((b.not_before or 0.0) for b in batches) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            outbox = Outbox()
            await send_batches(batches, outbox)
            await outbox.flush()

        with metrics.batch_seconds.labels(agent_name).time():
            await guarded(agent_name, events, work)


def _register(platform: str) -> None:
    for lane in ("transactional", "bulk"):
        name = f"pushstream.send_{platform}" + ("" if lane == "transactional" else "_bulk")

        at_once = pipeline.sender_batches if lane == "transactional" else pipeline.bulk_sender_batches

        async def lane_agent(stream: StreamT, _name: str = name, _at_once: int = at_once) -> None:
            await run_sender(stream, _name, wait_until_due=False, batches_at_once=_at_once)

        app.agent(deliveries[(platform, lane)], name=name)(lane_agent)

    retry_name = f"pushstream.retry_{platform}"

    async def retry_agent(stream: StreamT) -> None:
        await run_sender(stream, retry_name, wait_until_due=True, batches_at_once=pipeline.bulk_sender_batches)

    app.agent(retries[platform], name=retry_name)(retry_agent)


for _platform in PLATFORMS:
    _register(_platform)


@app.on_before_shutdown.connect
async def _close_senders(*args: Any, **kwargs: Any) -> None:
    await pool.close()
