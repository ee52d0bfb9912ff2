"""The sender tier: consume delivery and retry batches of one lane, send them, and write every outcome.

Why not a Faust agent: Faust commits offsets on a timer, after flushing everything its producer holds, so
under load the uncommitted window grows to seconds of deliveries, and it cannot tie a commit to a batch.
Here each poll is settled in one Kafka transaction: the status records, retry batches, dead letters,
deactivations, a "sent" memory entry per batch *and* the consumer offsets commit together or not at all.
So a crash repeats only the sends that were on the wire when it happened (the poll in progress), and a
batch whose outcome was committed is never sent again:
- its offset is committed atomically with its statuses, so no consumer of this group reads it again;
- the router may route the same users again after its own crash; it gives a re-routed batch the same
  ``batch_id``, and the sent memory (the compacted ``pushstream.sent`` topic, loaded per partition on
  assignment, written in the same transaction) makes the sender skip it;
- on a rebalance the revoked partitions' poll in progress is settled before they are handed over.

Retries live on per-lane retry topics, one per delay band (`rules.retry`): a partition whose head is not due
yet is paused until it is (and its position rewound), so it never blocks the other partitions or the lane's
deliveries, and a retry due soon never waits behind a long Retry-After (that one is in a later band).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from pushstream import logs, metrics
from pushstream.agents import protection
from pushstream.config import Settings
from pushstream.hooks import load_hooks
from pushstream.hooks.runner import PostSendQueue
from pushstream.models import DeliveryBatch, decode, encode
from pushstream.models.base import iso, utcnow
from pushstream.models.dlq import dead_letter
from pushstream.models.internal import inline_payloads
from pushstream.models.notifications import lane_of
from pushstream.models.vocabulary import LANES, PLATFORMS
from pushstream.providers import senders as provider_senders
from pushstream.providers.outcome import TRANSPORT_ERROR, Action, Sender, Verdict
from pushstream.rules.outcome_records import PollTopics, Record, SettledBatch, poll_records
from pushstream.rules.retry import RETRY_BANDS, RetryPolicy, band_suffix
from pushstream.rules.settle import settle
from pushstream.topology import TopicLayout, kafka_bootstrap

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 15000
# An attempt at a poll's transaction is not awaited past this (well past TRANSACTION_TIMEOUT_MS, after which the
# broker aborts it anyway, so a broker outage of tens of seconds is waited through): a producer whose sender
# routine died (OutOfOrderSequenceNumber after the broker restarted, seen in tests/integration/
# test_broker_outage.py) never completes it. The service dies
# instead and its process is restarted: the new producer fences the old one and the poll is redone.
TRANSACTION_DEADLINE = 4 * TRANSACTION_TIMEOUT_MS / 1000


class TransactionStuck(RuntimeError):
    """A poll's transaction did not end within TRANSACTION_DEADLINE."""


def lane_suffix(lane: str) -> str:
    return "" if lane == "transactional" else ".bulk"


def delivery_topic(platform: str, lane: str) -> str:
    return f"pushstream.deliveries.{platform}{lane_suffix(lane)}"


def retry_topic(platform: str, lane: str, band: int = RETRY_BANDS[0]) -> str:
    """The retry topic of one delay band (`rules.retry`): the first band keeps the original name."""
    return f"pushstream.retry.{platform}{lane_suffix(lane)}{band_suffix(band)}"


class SenderPool:
    """One started client per (app, platform, lane), created inside the running loop on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
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
                app_settings = self.settings.app(app_id)
                platform_settings = getattr(app_settings, platform, None) if app_settings else None
                if platform_settings is None:
                    return None
                limit = self.settings.pipeline.bulk_max_in_flight if lane == "bulk" else None
                sender = provider_senders.create(platform, platform_settings, max_in_flight=limit)
                await sender.start()
                self._senders[key] = sender
            return self._senders[key]

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()


class SentMemory:
    """Ids of batches whose outcome is committed, loaded per partition of the ``pushstream.sent`` topic."""

    def __init__(self, cap: int = 2_000_000) -> None:
        self._ids: dict[str, None] = {}
        self._cap = cap
        self.loaded: set[int] = set()

    def __contains__(self, batch_id: str) -> bool:
        return batch_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, batch_id: str) -> None:
        self._ids[batch_id] = None
        # The oldest go first (dicts keep insertion order), a tenth over the cap at a time: trimming on every
        # add would copy all the ids each time once the memory is full.
        if len(self._ids) > self._cap + self._cap // 10:
            self._ids = dict.fromkeys(list(self._ids)[-self._cap:])

    async def load(self, servers: str, topic: str, partitions: Iterable[int], *, settle_timeout: float = 20.0) -> int:
        """Read the committed entries of these memory partitions (compacted; small: one per batch).

        A transaction that committed just before this assignment (the previous owner settling its last poll)
        may not have its markers written yet, so its entries would be invisible to a read_committed reader.
        So first wait until the last stable offset has passed everything written before now; an open
        transaction of a dead producer is waited for at most ``settle_timeout`` (it aborts by then).
        """
        wanted = sorted(set(partitions) - self.loaded)
        if not wanted:
            return 0
        tps = [TopicPartition(topic, p) for p in wanted]
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed")
        raw = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False)
        await consumer.start()
        await raw.start()
        count = 0
        try:
            written = await raw.end_offsets(tps)  # high watermarks: everything written so far
            deadline = time.monotonic() + settle_timeout
            while True:
                stable = await consumer.end_offsets(tps)  # read_committed: the last stable offsets
                if all(stable[tp] >= written[tp] for tp in tps) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            remaining = {tp for tp in tps if stable[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500)
                for messages in batch.values():
                    for message in messages:
                        if message.key is not None:
                            self.add(message.key.decode("utf-8"))
                            count += 1
                for tp in list(remaining):
                    if await consumer.position(tp) >= stable[tp]:
                        remaining.discard(tp)
            self.loaded.update(wanted)
        finally:
            await consumer.stop()
            await raw.stop()
        return count


def _positions(consumer: AIOKafkaConsumer | None) -> dict[str, Any]:
    """aiokafka's per-partition fetch state (position, status, paused), read from its subscription."""
    try:
        assignment: Any = consumer._subscription.subscription.assignment  # type: ignore[union-attr]
        return {f"{tp.topic}:{tp.partition}": [state._position, str(state._status), state._paused]
                for tp, state in assignment._tp_state.items()}
    except Exception as exc:  # debugging aid only
        return {"error": repr(exc)}


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: SenderService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Settle the poll in progress before the partitions go: the next owner starts at its committed offset.
        async with self.service.lock:
            self.service.forget(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.service.remember(assigned)


class SenderService:
    """One lane's sender: a consumer group over that lane's delivery and retry topics."""

    def __init__(self, settings: Settings, layout: TopicLayout, lane: str, *,
                 platforms: Sequence[str] = PLATFORMS, instance: str | None = None) -> None:
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}")
        self.settings, self.layout, self.lane = settings, layout, lane
        self.platforms = tuple(platforms)
        self.servers = kafka_bootstrap(settings.kafka.broker)
        # One consumer group per (lane, platform set): a provider that answers slowly holds only its own
        # transactions and rebalances, never another platform's or lane's.
        self.group = f"{settings.topic('pushstream')}-sender-{lane}-{'+'.join(self.platforms)}"
        instance = instance or os.environ.get("PUSHSTREAM_WORKER_ID")
        self.static = instance is not None
        self.instance = instance or uuid.uuid4().hex[:12]
        self.delivery_topics = {settings.topic(delivery_topic(p, lane)): p for p in self.platforms}
        self.retry_topics = {settings.topic(retry_topic(p, lane, band)): p
                             for p in self.platforms for band in RETRY_BANDS}
        # Every topic a poll writes to, with its partition count (the one place the sender names them).
        self.poll_topics = PollTopics(
            status=settings.topic("pushstream.status"), status_partitions=layout.partitions("pushstream.status"),
            dlq=settings.topic("pushstream.dlq"), sent=settings.topic("pushstream.sent"),
            sent_partitions=layout.partitions("pushstream.sent"), progress=settings.topic("pushstream.progress"),
            user_events=settings.topic("pushstream.user-events"), user_partitions=layout.user_partitions,
            retry={(p, band): (settings.topic(name), layout.partitions(name))
                   for p in self.platforms for band in RETRY_BANDS for name in [retry_topic(p, lane, band)]})
        pipeline = settings.pipeline
        self.policy = RetryPolicy(pipeline.max_attempts, pipeline.retry_base_seconds, pipeline.retry_max_seconds,
                                  pipeline.retry_after_cap_seconds, dict(pipeline.max_attempts_by_class))
        self.max_batches = pipeline.sender_batches if lane == "transactional" else pipeline.bulk_sender_batches
        self.pool = SenderPool(settings)
        # Breakers, mass-deactivation guards and rate limits per (app, provider), shared by the process's lanes.
        self.protection = protection.for_process(settings)
        self.memory = SentMemory()
        self.lock = asyncio.Lock()
        self._paused: dict[TopicPartition, float] = {}
        self._owned: set[TopicPartition] = set()  # what this member may settle: set on assignment only
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.ready = asyncio.Event()
        self.started = False
        self.settled = 0  # batches settled by this process (for tests and logs)
        self.post_send = PostSendQueue.of(load_hooks(settings))  # None without post_send hooks

    async def start(self) -> None:
        # The transactional id is stable across restarts of the same worker: starting the producer fences a
        # crashed predecessor and aborts its open transaction at once.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.servers, transactional_id=f"{self.group}-{self.instance}",
            enable_idempotence=True, acks="all", linger_ms=2, max_batch_size=512 * 1024, compression_type="lz4",
            max_request_size=4 * 1024 * 1024, transaction_timeout_ms=TRANSACTION_TIMEOUT_MS)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers, group_id=self.group, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            group_instance_id=self.instance if self.static else None,
            max_poll_records=self.max_batches, session_timeout_ms=10000, heartbeat_interval_ms=2000,
            max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024)
        self._consumer.subscribe([*self.delivery_topics, *self.retry_topics], listener=_Rebalance(self))
        await self._consumer.start()
        if self.post_send is not None:
            self.post_send.start()
        self._task = asyncio.create_task(self._run(), name=f"pushstream.sender.{self.lane}")
        self.started = True
        log.info("sender %s started: group %s, instance %s", self.lane, self.group, self.instance)

    async def stop(self) -> None:
        """Finish the poll in progress, leave the group, close clients."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:
                log.exception("sender %s stopped with an error", self.lane)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self.post_send is not None:
            await self.post_send.stop()
        await self.pool.close()

    def describe(self) -> dict[str, Any]:
        """What this member owns and where it stands, for /debug/senders."""
        consumer = self._consumer
        assignment = consumer.assignment() if consumer is not None else set()
        return {
            "group": self.group, "instance": self.instance, "settled_batches": self.settled,
            "memory": len(self.memory),
            "owned": sorted(f"{tp.topic}:{tp.partition}" for tp in self._owned),
            "assigned": sorted(f"{tp.topic}:{tp.partition}" for tp in assignment),
            "paused": {f"{tp.topic}:{tp.partition}": due for tp, due in self._paused.items()},
            "positions": _positions(consumer),
            "protection": protection.describe(self.protection),
        }

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    # Rebalance callbacks -------------------------------------------------------------------------------------
    def forget(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self._paused.pop(tp, None)
            # consumer.assignment() still lists revoked partitions until the new assignment arrives: records
            # polled before the rebalance must not be settled in that window, the next owner has them.
            self._owned.discard(tp)
        # Another process may settle batches of these partitions now: reload their memory when they return.
        self.memory.loaded.difference_update(tp.partition % self.poll_topics.sent_partitions for tp in revoked)

    async def remember(self, assigned: Iterable[TopicPartition]) -> None:
        """Load the sent memory of the assigned partitions, then start each from its committed offset read
        *after* that: the previous owner's last commit is transactional too, and only visible once settled.

        Whatever fails here (a new rebalance while this waits revokes partitions under it), the member ends up
        owning what it is still assigned: a callback that raised used to leave it owning nothing, dropping
        and rewinding every record it polled until the next rebalance.
        """
        consumer = self._consumer
        assert consumer is not None
        tps = set(assigned)
        started = time.monotonic()
        self._owned = set()
        count = 0
        try:
            count = await self.memory.load(self.servers, self.poll_topics.sent,
                                           {tp.partition % self.poll_topics.sent_partitions for tp in tps})
            await self._position(consumer, tps)
        except Exception:
            log.exception("sender %s/%s: assignment set-up failed; starting from the committed offsets",
                          self.lane, "+".join(self.platforms))
        finally:
            self._owned = tps & consumer.assignment()
        log.info("sender %s/%s: %d partitions assigned, %d sent-memory entries loaded in %.0f ms", self.lane,
                 "+".join(self.platforms), len(tps), count, (time.monotonic() - started) * 1000)
        self.ready.set()

    @staticmethod
    async def _position(consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> None:
        """Seek every partition to its committed offset (one request for all), or to its beginning.

        aiokafka read the committed offsets before the assignment callback, possibly before the previous
        owner's last commit was visible; records polled meanwhile were rewound by the loop (not owned yet).
        """
        coordinator: Any = consumer._coordinator
        fresh = await coordinator.fetch_committed_offsets(list(tps))
        never_committed = []
        for tp in tps:
            meta = fresh.get(tp)
            if meta is not None and meta.offset >= 0:
                consumer.seek(tp, meta.offset)
            else:
                never_committed.append(tp)
        if never_committed:
            await consumer.seek_to_beginning(*never_committed)

    # The loop ------------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping:
            self._resume_due(consumer)
            polled = await consumer.getmany(timeout_ms=100, max_records=self.max_batches)
            if not polled:
                continue
            async with self.lock:
                assigned = self._owned
                work: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]] = []
                offsets: dict[TopicPartition, int] = {}
                now = time.time()
                for tp, messages in polled.items():
                    if tp in self._paused:
                        continue  # rewound: the records come again
                    if tp not in assigned:
                        # Revoked while polled (the next owner has them), or not owned *yet*: an assignment
                        # still loading its memory. Then rewind, so the records come again once it is owned.
                        self._rewind(consumer, tp, messages[0].offset)
                        continue
                    for message in messages:
                        due = self._not_before(tp, message)
                        if due is not None and due > now:
                            # Not due: rewind and pause this partition only, until it is.
                            consumer.seek(tp, message.offset)
                            consumer.pause(tp)
                            self._paused[tp] = due
                            break
                        work.append((tp, message))
                        offsets[tp] = message.offset + 1
                if offsets:
                    with metrics.batch_seconds.labels(f"sender_{self.lane}").time():
                        await self._settle(work, offsets)

    @staticmethod
    def _rewind(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            if tp in consumer.assignment():
                consumer.seek(tp, offset)
        except Exception:  # revoked in the meantime: nothing to rewind
            pass

    def _not_before(self, tp: TopicPartition, message: ConsumerRecord[bytes, bytes]) -> float | None:
        if tp.topic not in self.retry_topics:
            return None
        try:
            value = orjson.loads(message.value)
            return float(value.get("not_before") or 0.0)
        except Exception:
            return None  # undecodable: dead-lettered by _settle

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        if not self._paused:
            return
        now = time.time()
        for tp, due in list(self._paused.items()):
            if due <= now:
                del self._paused[tp]
                consumer.resume(tp)

    async def _settle(self, work: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]],
                      offsets: dict[TopicPartition, int]) -> None:
        records: list[Record] = []
        batches: list[tuple[TopicPartition, ConsumerRecord[bytes, bytes], DeliveryBatch, str]] = []
        polled: set[str] = set()
        settled: list[SettledBatch] = []
        errors = 0  # records dead-lettered as internal_error (counted once committed)
        for tp, message in work:
            try:
                batch = inline_payloads(decode(DeliveryBatch, message.value))
                batch_id = batch.batch_id or f"{tp.topic}:{tp.partition}:{message.offset}"
            except Exception as exc:
                records.append(self._dead_letter_record(tp, message, "internal_error", repr(exc)[:500]))
                errors += 1
                continue
            if batch_id in self.memory or batch_id in polled:
                metrics.sends_skipped.labels(self.lane).inc(len(batch.items))
                continue  # settled before, or twice in this poll (a batch routed twice): never sent twice
            polled.add(batch_id)
            batches.append((tp, message, batch, batch_id))
        sent = await asyncio.gather(*(self._send(batch) for _, _, batch, _ in batches))
        self.protection.after_send([(batch, plan, verdicts) for (_, _, batch, _), (plan, verdicts)
                                    in zip(batches, sent, strict=True)])
        # Retry delays count from the answer, not from before the send.
        now, at = time.time(), iso(utcnow())
        for (tp, message, batch, batch_id), (_, verdicts) in zip(batches, sent, strict=True):
            try:
                outcome = settle(batch, verdicts, now=now, at=at, policy=self.policy)
            except Exception as exc:  # a corrupt batch must not stop the lane
                log.exception("sender %s: cannot settle batch %s", self.lane, batch_id)
                records.append(self._dead_letter_record(tp, message, "internal_error", repr(exc)[:500]))
                errors += 1
                continue
            settled.append(SettledBatch(tp.topic, tp.partition, message.offset, batch_id, batch, outcome))
        records.extend(poll_records(settled, self.poll_topics, now=now))
        await self._commit(records, offsets)
        outcomes = [(entry.batch, entry.outcome) for entry in settled]
        metrics.observe_poll(self.lane, outcomes, answered_at=now, internal_errors=errors)
        if self.post_send is not None:
            self.post_send.offer(outcomes)  # committed outcomes; the hook runs in its own task
        for _, _, _, batch_id in batches:
            self.memory.add(batch_id)
        self.settled += len(batches)

    async def _send(self, batch: DeliveryBatch) -> tuple[protection.Plan, list[Verdict | None]]:
        """Send what the breaker and the rate limit admit now: one verdict per item, held ones last."""
        logs.bind(app_id=batch.app_id, notification_id=batch.notification_id)  # this batch's task only
        sender = await self.pool.get(batch.app_id, batch.platform, lane_of(batch.channel))
        if sender is None:
            return protection.Plan(0, 0.0, []), [None] * len(batch.items)
        plan = self.protection.before_send(batch)
        if plan.wait > 0:
            await asyncio.sleep(plan.wait)  # rate-limit pacing (at most rate_limit_max_wait_seconds)
        verdicts: list[Verdict | None] = []
        if plan.send:
            part = batch if plan.send == len(batch.items) else protection.first(batch, plan.send)
            try:
                verdicts = list(await sender.send_batch(part))
            except Exception:  # a sender bug must not lose the batch: retry it like a transport error
                log.exception("sender %s: %s send_batch raised", self.lane, batch.platform)
                verdicts = [Verdict(Action.RETRY, TRANSPORT_ERROR)] * plan.send
        verdicts.extend(plan.held)
        return plan, verdicts

    def _dead_letter_record(self, tp: TopicPartition, message: ConsumerRecord[bytes, bytes], reason: str,
                            detail: str) -> Record:
        letter = dead_letter(reason, detail, topic=tp.topic, partition=tp.partition, offset=message.offset,
                             key=message.key, value=message.value)
        return (self.poll_topics.dlq, message.key, encode(letter), None)

    async def _commit(self, records: list[Record], offsets: dict[TopicPartition, int]) -> None:
        """Write the outcome and commit the input offsets in one transaction."""
        producer = self._producer
        assert producer is not None
        async def transact() -> None:
            async with producer.transaction():
                await self._send_all(producer, records)
                await producer.send_offsets_to_transaction(offsets, self.group)

        for attempt in range(1, 6):
            # asyncio.wait, not wait_for: cancelling a stuck attempt would wait for its abort, which is stuck too.
            task = asyncio.ensure_future(transact())
            done, _ = await asyncio.wait({task}, timeout=TRANSACTION_DEADLINE)
            if not done:
                log.error("sender %s: a transaction did not end within %.0fs; stopping so the process is restarted",
                          self.lane, TRANSACTION_DEADLINE)
                raise TransactionStuck(f"sender {self.lane}: transaction stuck for {TRANSACTION_DEADLINE:.0f}s")
            try:
                task.result()
                return
            except Exception as exc:
                if attempt == 5:
                    raise
                log.warning("sender %s: transaction failed (%s), attempt %d", self.lane, exc, attempt)
                await asyncio.sleep(0.2 * attempt)

    @staticmethod
    async def _send_all(producer: AIOKafkaProducer, records: list[Record]) -> None:
        """Append the records to one batch per partition (a few µs each, where `send` costs a future and a
        partitioner call per record); records without a partition (dead letters, rare) go one by one."""
        builders: dict[tuple[str, int], Any] = {}
        for topic, key, value, partition in records:
            if partition is None:
                await producer.send(topic, value, key=key)
                continue
            builder = builders.get((topic, partition))
            if builder is None:
                builder = builders[(topic, partition)] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                await producer.send_batch(builder, topic, partition=partition)
                builder = builders[(topic, partition)] = producer.create_batch()
                if builder.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in a batch for {topic}")
        for (topic, partition), builder in builders.items():
            await producer.send_batch(builder, topic, partition=partition)


def sender_services(settings: Settings, layout: TopicLayout, lanes: Iterable[str] = LANES,
                    platforms: Sequence[str] = PLATFORMS) -> list[SenderService]:
    """One service per (lane, platform): lanes and providers never wait for each other."""
    return [SenderService(settings, layout, lane, platforms=[platform]) for lane in lanes for platform in platforms]
