"""Traffic and what comes back: the batched registration publish, the transactional trickle, and the
watchers of the status topic and of the trickle's hops."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.e2e.options import (
    APP,
    TX_PREFIX,
)
from benchmarks.e2e.population import Population
from pushstream.models.status import FINAL_STATUSES

# Status values are orjson dumps of StatusEvent: matching bytes avoids a JSON parse per campaign record.
STATUS_FIELD = re.compile(rb'"status":"([a-z_]+)"')
DEVICE_FIELD = re.compile(rb'"device_id":"([^"]+)"')
PLATFORM_FIELD = re.compile(rb'"platform":"([a-z]+)"')
FINAL = frozenset(s.value.encode() for s in FINAL_STATUSES)


async def publish_batched(producer: AIOKafkaProducer, topic: str, values: Sequence[bytes],
                          rng: random.Random) -> None:
    """Publish like an external producer: whole batches, each to a random partition, no keys."""
    partitions = sorted(await producer.partitions_for(topic))
    acks = []
    batch = producer.create_batch()
    for value in values:
        if batch.append(key=None, value=value, timestamp=None) is None:
            acks.append(await producer.send_batch(batch, topic, partition=rng.choice(partitions)))
            batch = producer.create_batch()
            batch.append(key=None, value=value, timestamp=None)
    if batch.record_count():
        acks.append(await producer.send_batch(batch, topic, partition=rng.choice(partitions)))
    await asyncio.gather(*acks)



def epoch(iso_text: str) -> float:
    return dt.datetime.fromisoformat(iso_text).timestamp()


@dataclass
class TxNotification:
    published: float  # wall clock just before send (producer linger 0)
    phase: str  # warmup | idle | campaign | after
    expected: int
    statuses: list[dict[str, Any]] = field(default_factory=list)
    # Kafka timestamps (epoch s) of the first intent and the first delivery batch written for it: where the
    # publish→provider time goes (ingest+planner, router, sender).
    intent_at: float | None = None
    delivery_at: float | None = None

    def final(self) -> bool:
        return sum(1 for s in self.statuses if s["status"] in FINAL_STATUSES) >= self.expected


class StatusWatcher:
    """Reads the status topic from given offsets: counts the campaign's final statuses (bytes matching only)
    and keeps the trickle's statuses (parsed; a few per second)."""

    def __init__(self, bootstrap: str, topic: str, campaign_id: str, tx: dict[str, TxNotification]) -> None:
        self.topic = topic
        self.campaign_marker = b'"notification_id":"' + campaign_id.encode() + b'"'
        self.tx_marker = b'"notification_id":"' + TX_PREFIX.encode()
        self.tx = tx
        self.campaign_final = 0  # final status records of the campaign (a device may have more than one)
        self.campaign_devices: set[bytes] = set()  # devices with a final campaign status
        self.campaign_repeated_finals = 0  # final records for a device that already had one
        self.campaign_final_by_platform: Counter[str] = Counter()
        self.campaign_records = 0
        self.campaign_by_status: Counter[str] = Counter()
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.records = 0
        # read_committed: a sender settles each poll in one Kafka transaction; an aborted one is written again.
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed",
            fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024)

    async def start(self, offsets: dict[TopicPartition, int]) -> None:
        await self.consumer.start()
        self.consumer.assign(list(offsets))
        for tp, offset in offsets.items():
            self.consumer.seek(tp, offset)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=200)
            for records in batches.values():
                self._consume(records)

    def _consume(self, records: list[Any]) -> None:
        marker, tx_marker = self.campaign_marker, self.tx_marker
        self.records += len(records)
        for record in records:
            value: bytes = record.value
            if marker in value:
                self.campaign_records += 1
                match = STATUS_FIELD.search(value)
                status = match.group(1) if match else b"?"
                self.campaign_by_status[status.decode()] += 1
                if status in FINAL:
                    self.campaign_final += 1
                    device = DEVICE_FIELD.search(value)
                    device_id = device.group(1) if device else b"?"
                    if device_id in self.campaign_devices:
                        self.campaign_repeated_finals += 1
                    else:
                        self.campaign_devices.add(device_id)
                        platform = PLATFORM_FIELD.search(value)
                        self.campaign_final_by_platform[platform.group(1).decode() if platform else "?"] += 1
                    ts = record.timestamp
                    self.first_ms = ts if self.first_ms is None else min(self.first_ms, ts)
                    self.last_ms = ts if self.last_ms is None else max(self.last_ms, ts)
            elif tx_marker in value:
                status_event = orjson.loads(value)
                notification = self.tx.get(status_event["notification_id"])
                if notification is not None:
                    notification.statuses.append(status_event)


class HopWatcher:
    """Reads the transactional lane's intents and delivery topics (only the trickle uses that lane) and notes
    when each trickle notification passed each hop."""

    def __init__(self, bootstrap: str, intents: str, deliveries: list[str], tx: dict[str, TxNotification]) -> None:
        self.intents, self.tx = intents, tx
        self.marker = re.compile(rb'"(?:id|notification_id)":"(' + TX_PREFIX.encode() + rb'[0-9]+)"')
        self.topics = [intents, *deliveries]
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in (self.consumer.partitions_for_topic(t) or ())]
        if not tps:
            await self.consumer._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in self.topics for p in (self.consumer.partitions_for_topic(t) or ())]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    match = self.marker.search(record.value or b"")
                    notification = self.tx.get(match.group(1).decode()) if match else None
                    if notification is None:
                        continue
                    at = record.timestamp / 1000
                    if tp.topic == self.intents:
                        notification.intent_at = notification.intent_at or at
                    else:
                        notification.delivery_at = notification.delivery_at or at


class Trickle:
    """Transactional notifications at a steady rate, each to one random tx user."""

    def __init__(self, bootstrap: str, topic: str, population: Population, rate: float, rng: random.Random) -> None:
        self.topic = topic
        self.population = population
        self.rate = rate
        self.rng = rng
        self.sent: dict[str, TxNotification] = {}
        self.phase = "warmup"
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        self._partitions: list[int] = []
        self._acks: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        await self.producer.start()
        self._partitions = sorted(await self.producer.partitions_for(self.topic))

    async def stop(self) -> None:
        await asyncio.gather(*self._acks)
        await self.producer.stop()

    async def publish_one(self, user: str | None = None) -> str:
        user = user or self.rng.choice(self.population.tx_users)
        nid = f"{TX_PREFIX}{len(self.sent)}"
        body = {"id": nid, "app_id": APP, "channel": "transactional", "priority": "high",
                "target": {"user_ids": [user]}, "title": "Your code", "body": f"{self.rng.randrange(10**6):06d}"}
        value = orjson.dumps(body)
        self.sent[nid] = TxNotification(published=time.time(), phase=self.phase,
                                        expected=self.population.tx_devices[user])
        self._acks.append(await self.producer.send(self.topic, value, partition=self.rng.choice(self._partitions)))
        return nid

    async def run(self, stop: asyncio.Event) -> None:
        """Pace by schedule, not by sleeps between sends, so a slow send does not lower the rate."""
        if self.rate <= 0:
            return
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not stop.is_set():
            await self.publish_one()
            next_at += interval
            with contextlib.suppress(TimeoutError):  # the pacing timeout is the normal way round
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - time.monotonic()))

    def done(self) -> int:
        return sum(1 for n in self.sent.values() if n.final())
