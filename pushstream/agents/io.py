"""What every agent shares: the topics, the tables, the outbox (batched sends awaited before the input is
acked) and the batch guard. Built per app by `Context.build`; importing this module registers nothing."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import faust
from faust.types import EventT, StreamT

from pushstream import metrics
from pushstream.models import TokenClaims, UserEvents, encode
from pushstream.models.base import Invalid
from pushstream.models.dlq import dead_letter
from pushstream.models.redact import redact_text
from pushstream.models.vocabulary import LANES, PLATFORMS
from pushstream.rules.keys import by_partition, user_key
from pushstream.runtime import Runtime
from pushstream.tables import Tables, declare_tables

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Topics:
    devices_in: faust.TopicT
    preferences_in: faust.TopicT
    notifications_in: faust.TopicT
    engagement_in: faust.TopicT
    user_events: faust.TopicT
    token_claims: faust.TopicT
    # Intents per lane: the bulk lane's broadcasts must not queue in front of transactional intents.
    intents: dict[str, faust.TopicT]
    schedule: faust.TopicT
    status_out: faust.TopicT
    dlq: faust.TopicT
    deliveries: dict[tuple[str, str], faust.TopicT]
    progress: faust.TopicT
    dlq_counts: faust.TopicT
    audit: faust.TopicT

    @classmethod
    def declare(cls, app: faust.App, rt: Runtime) -> Topics:
        def topic(name: str) -> faust.TopicT:
            """A pushstream topic by its logical name (topics.yaml), with the configured prefix."""
            spec = rt.layout.spec(name)
            return app.topic(rt.topic_name(name), partitions=spec.partitions, internal=False)

        return cls(
            devices_in=topic("pushstream.devices"),
            preferences_in=topic("pushstream.preferences"),
            notifications_in=topic("pushstream.notifications"),
            engagement_in=topic("pushstream.engagement"),
            user_events=topic("pushstream.user-events"),
            token_claims=topic("pushstream.token-claims"),
            intents={"transactional": topic("pushstream.intents"), "bulk": topic("pushstream.intents.bulk")},
            schedule=topic("pushstream.schedule"),
            status_out=topic("pushstream.status"),
            dlq=topic("pushstream.dlq"),
            deliveries={
                (platform, lane): topic(f"pushstream.deliveries.{platform}" + ("" if lane == "transactional"
                                                                                 else ".bulk"))
                for platform in PLATFORMS for lane in LANES
            },
            progress=topic("pushstream.progress"),
            dlq_counts=topic("pushstream.dlq-counts"),
            audit=topic("pushstream.audit"),
        )


class Outbox:
    """Collects the records one batch produces; `flush` hands them to the producer.

    An input batch is acked only after its outbox is flushed, and Faust flushes the producer before it
    commits offsets, so a crash re-processes a batch instead of losing what it would have written
    (at-least-once; dedup downstream makes repeats harmless).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._pending: list[tuple[str, bytes | None, bytes, int | None]] = []
        self._dead: Counter[tuple[str, str]] = Counter()  # (source, reason) of the pending dead letters

    def add(self, to: faust.TopicT, value: faust.Record | bytes, *, key: str | bytes | None = None,
            partition: int | None = None) -> None:
        raw_key = key.encode("utf-8") if isinstance(key, str) else key
        raw_value = value if isinstance(value, bytes) else encode(value)
        self._pending.append((to.get_topic_name(), raw_key, raw_value, partition))

    def dead_letter(self, event: EventT, error: Invalid, source: str) -> None:
        message = event.message
        self._dead[(source, error.reason)] += 1
        self.add(
            self.ctx.topics.dlq,
            dead_letter(error.reason, error.detail, topic=message.topic, partition=message.partition,
                        offset=message.offset, key=message.key, value=message.value),
            key=message.key,
        )

    async def flush(self, *, wait: bool = True) -> None:
        """Hand everything to the producer; with ``wait``, also wait for the broker's acks.

        Faust flushes the producer before it commits input offsets, so without ``wait`` a crash still
        re-processes the input rather than losing output. Wait only when a later write (a table change
        another batch will trust) must not become durable before these records.
        """
        acks: list[Awaitable[Any]] = []
        # Straight to the producer: Topic.send's per-message bookkeeping costs more than the record itself,
        # and values are already encoded.
        send = self.ctx.app.producer.send
        for name, key, value, partition in self._pending:
            acks.append(await send(name, key, value, partition, None, None))
        self._pending.clear()
        if self._dead:  # counted where they are written: handed to the producer
            metrics.count_dead_letters(self._dead)
            self._dead = Counter()
        if acks and wait:
            await asyncio.gather(*acks)


@dataclass(frozen=True)
class Context:
    """One app's wiring: the agents of a role are registered against it."""

    app: faust.App
    rt: Runtime
    topics: Topics
    tables: Tables

    @classmethod
    def build(cls, app: faust.App, rt: Runtime) -> Context:
        return cls(app=app, rt=rt, topics=Topics.declare(app, rt), tables=declare_tables(app, rt))

    def outbox(self) -> Outbox:
        return Outbox(self)

    async def guarded(self, source: str, events: Sequence[EventT], work: Callable[[], Awaitable[None]]) -> None:
        """Run one batch's work. A bug or a corrupt record dead-letters the batch (with the error) instead of
        crashing the agent, which in Faust would silently stop that agent while the worker stays up."""
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The traceback may quote the records: redacted like the dead letters themselves.
            log.error("%s: batch of %d dead-lettered: %s", source, len(events), redact_text(traceback.format_exc()))
            outbox = self.outbox()
            for event in events:
                outbox.dead_letter(event, Invalid("internal_error", repr(exc)[:500]), source)
            await outbox.flush()

    def add_user_events(self, outbox: Outbox, events: Iterable[dict[str, Any]]) -> None:
        """Registry events, as one UserEvents record per partition of their app/user."""
        grouped = by_partition(events, lambda e: user_key(e["app_id"], e["user_id"]),
                               self.rt.layout.user_partitions)
        for partition, items in grouped.items():
            outbox.add(self.topics.user_events, UserEvents(events=items), key=f"user-events/{partition}",
                       partition=partition)

    def add_progress(self, outbox: Outbox, statuses: Iterable[dict[str, Any]]) -> None:
        """Campaign progress of status records just written: one `ProgressBatch` per progress partition (keyed
        by app/notification id), in the same outbox, so progress never re-reads the status stream."""
        from pushstream.models.internal import ProgressBatch
        from pushstream.rules.progress import progress_items_by_partition

        for partition, items in progress_items_by_partition(statuses, self.rt.layout.user_partitions).items():
            outbox.add(self.topics.progress, ProgressBatch(items=items), key=f"progress/{partition}",
                       partition=partition)

    def add_token_claims(self, outbox: Outbox, claims: Iterable[dict[str, Any]]) -> None:
        """Token claims, as one TokenClaims record per partition of their app/token fingerprint."""
        to = self.topics.token_claims
        grouped = by_partition(claims, lambda c: f"{c['app_id']}/{c['fingerprint']}", to.partitions or 1)
        for partition, items in grouped.items():
            outbox.add(to, TokenClaims(claims=items), key=f"token-claims/{partition}", partition=partition)


def event_batches(stream: StreamT, size: int, within: float) -> AsyncIterator[Sequence[EventT]]:
    """Batches of events (with their messages, for dead letters) from a stream of any partitions.

    Only for agents that write no table: a batch mixes partitions, and a table write goes to the changelog
    partition of the current event.
    """
    concrete: Any = stream  # take_events lives on the concrete Stream; StreamT does not declare it
    return cast(AsyncIterator[Sequence[EventT]], concrete.take_events(size, within=within))


def message_time(event: EventT) -> float:
    """The record's Kafka timestamp in epoch seconds: stable across replays, unlike the wall clock."""
    ts = event.message.timestamp
    return float(ts) if ts else time.time()
