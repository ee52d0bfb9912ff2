"""CPU per device of the senders' and progress's per-delivery Python work, without Kafka or providers.

    python -m benchmarks.hotpath [--devices 20000] [--inline-payloads]

- ``settle``: what a bulk sender does with one polled delivery batch of 500 devices once the provider answered:
  decode the record, settle the verdicts (`rules.settle`), build the status, progress and sent-memory records
  (`rules.outcome_records.poll_records`),
  and append them to producer batches (aiokafka's real `BatchBuilder`, lz4, as `SenderService._send_all`).
  ``--inline-payloads`` encodes the batches the old way (every item carrying its own payload).
- ``router``: what the router does per routing step of a broadcast (500 users with an iPhone, a Pixel and a
  browser each; every fifth user already had the notification, so its devices get `duplicate` statuses):
  `agents.router.route_intent` with its table reads, `rules.fanout.fan_out_user`, the statuses, progress and
  chunked delivery batches, into a recording outbox (no Kafka, no encoding: the outbox's flush is not counted).
- ``progress``: what the router's progress agent does with one `ProgressBatch` of 500 statuses: group, read
  each user's entries, `rules.progress.apply_statuses`, write one RocksDB batch and its changelog records.

CPU time is `time.process_time()`; on a loaded machine the figures rise, so compare runs made together.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from rocksdict import Options, Rdict

from pushstream.agents.progress import apply_progress
from pushstream.agents.router import PayloadCache, route_intent
from pushstream.agents.senders import SenderService
from pushstream.config import Settings
from pushstream.models import DeliveryBatch, IntentBatch, decode, encode
from pushstream.models.base import iso, utcnow
from pushstream.models.internal import inline_payloads, share_payloads
from pushstream.providers.outcome import Action, Verdict
from pushstream.rules.keys import user_key
from pushstream.rules.outcome_records import SettledBatch, poll_records
from pushstream.rules.preferences import record_sent
from pushstream.rules.progress import progress_items_by_partition
from pushstream.rules.settle import settle
from pushstream.tables.batch import write_partition
from pushstream.topology import load_layout
from tests.unit.factories import device, notification
from tests.unit.factories import settings as app_settings

BATCH = 500
PAYLOAD = {"aps": {"alert": {"title": "Winter sale", "body": "Everything 50% off until Sunday"}, "sound": "default"},
           "campaign": "winter"}


def delivery_record(k: int, *, shared: bool) -> bytes:
    items = [{"user_id": f"u-{k}-{i // 2}", "device_id": f"d-{k}-{i}", "token": f"{k:08x}{i:056x}",
              "payload": PAYLOAD} for i in range(BATCH)]
    payloads = None
    if shared:
        items, payloads = share_payloads(items)
    return encode(DeliveryBatch(notification_id="n-1", app_id="demo", platform="apns", channel="marketing",
                                priority="normal", items=items, payloads=payloads, batch_id=f"o/0/{k}/apns/0",
                                received_at=time.time()))


class Producer:
    """aiokafka's batch API as the sender uses it; a batch is built (compressed) when "sent"."""

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(512 * 1024, 3, is_transactional=True)  # 3: lz4

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> None:
        builder._build()

    async def send(self, *args: Any, **kwargs: Any) -> None:
        return None


async def settle_path(devices: int, *, shared: bool) -> float:
    service = SenderService(Settings(), load_layout(Path("topics.yaml")), "bulk", platforms=["apns"])
    records_in = [delivery_record(k, shared=shared) for k in range(max(1, devices // BATCH))]
    delivered = [Verdict(Action.DELIVERED, None, 200)] * BATCH
    tp, producer = TopicPartition("pushstream.deliveries.apns.bulk", 0), Producer()
    started = time.process_time()
    for raw in records_in:
        message: Any = SimpleNamespace(value=raw, key=b"demo/n-1", offset=1)
        batch = inline_payloads(decode(DeliveryBatch, raw))
        outcome = settle(batch, delivered, now=time.time(), at=iso(utcnow()), policy=service.policy)
        settled = SettledBatch(tp.topic, tp.partition, message.offset, batch.batch_id or "", batch, outcome)
        records = poll_records([settled], service.poll_topics, now=time.time())
        await service._send_all(producer, records)  # type: ignore[arg-type]
    return (time.process_time() - started) / (len(records_in) * BATCH)


class Store:
    """The parts of Faust's RocksDB store the batched writer and the local reads use, on a real RocksDB."""

    def __init__(self, root: str) -> None:
        self.db = Rdict(root, options=Options(raw_mode=True))
        self._key_index: dict[bytes, int] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        return self.db

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        pass


class ChangelogProducer:
    async def send(self, topic: str, key: Any, value: Any, partition: Any, timestamp: Any, headers: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=0))
        return future


async def progress_path(devices: int) -> float:
    store = Store(tempfile.mkdtemp(prefix="pushstream-hotpath-"))

    class Table:
        data = store
        changelog_topic = SimpleNamespace(get_topic_name=lambda: "progress-changelog")

        @staticmethod
        def get(key: bytes, default: Any = None) -> Any:
            raw = store.db.get(key)
            return default if raw is None else orjson.loads(raw)

    at = iso(utcnow())
    batches: list[list[list[Any]]] = []
    for k in range(max(1, devices // BATCH)):
        statuses = [{"notification_id": "n-1", "app_id": "demo", "user_id": f"u-{k}-{i // 2}", "device_id": f"d-{i}",
                     "platform": "apns", "status": "delivered", "reason": None, "at": at} for i in range(BATCH)]
        batches.extend(progress_items_by_partition(statuses, 1).values())
    app: Any = SimpleNamespace(producer=ChangelogProducer())
    started = time.process_time()
    for offset, items in enumerate(batches):
        await write_partition(app, Table, 0, apply_progress(Table, items, offset))  # type: ignore[arg-type]
    return (time.process_time() - started) / (len(batches) * BATCH)


class RecordingOutbox:
    def __init__(self) -> None:
        self.records: list[tuple[Any, Any, Any, Any]] = []

    def add(self, to: Any, value: Any, *, key: Any = None, partition: Any = None) -> None:
        self.records.append((to, value, key, partition))


class States:
    """The users' delivery memory as `route_intent` reads and writes it (a `BatchView`), over a dict."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


async def router_path(devices: int) -> float:
    store = Store(tempfile.mkdtemp(prefix="pushstream-hotpath-"))
    preferences = SimpleNamespace(data=store, changelog_topic=SimpleNamespace(get_topic_name=lambda: "prefs"))
    topic = SimpleNamespace(partitions=12, get_topic_name=lambda: "t")
    topics = SimpleNamespace(status_out=topic, dlq=topic, schedule=topic, intents={"bulk": topic},
                             deliveries={(p, "bulk"): topic for p in ("apns", "fcm", "webpush")})
    settings = app_settings()
    ctx: Any = SimpleNamespace(rt=SimpleNamespace(settings=settings, hooks={}), topics=topics,
                               tables=SimpleNamespace(preferences=preferences),
                               add_progress=lambda outbox, statuses: progress_items_by_partition(statuses, 12))
    n = notification(id="n-1", channel="marketing", received_at=time.time(), ttl=3600)
    intent = IntentBatch(notification=n, broadcast=True, origin="notifications:0:1")
    user_devices = {"d-a": device("d-a", "apns"), "d-f": device("d-f", "fcm"), "d-w": device("d-w", "webpush")}
    now = utcnow()
    steps = []
    for k in range(max(1, devices // (3 * BATCH))):
        users = [(f"u-{k}-{i}", user_devices) for i in range(BATCH)]
        seen = {user_key("demo", u): record_sent(None, "n-1", "marketing", None, now.timestamp(), "x")
                for u, _ in users[::5]}
        steps.append((users, States(seen)))
    render = PayloadCache(n)
    started = time.process_time()
    for k, (users, states) in enumerate(steps):
        await route_intent(ctx, intent, 0, RecordingOutbox(), states, now, users=users,  # type: ignore[arg-type]
                           render=render, batch_prefix=f"notifications:0:1/0/{k}")
    return (time.process_time() - started) / (len(steps) * BATCH * 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--inline-payloads", action="store_true",
                        help="delivery batches with a payload per item (the format before payloads were shared)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each path; the fastest is reported (the others met a busy machine)")
    args = parser.parse_args()
    settle_us = min(asyncio.run(settle_path(args.devices, shared=not args.inline_payloads))
                    for _ in range(args.repeat)) * 1e6
    router_us = min(asyncio.run(router_path(args.devices)) for _ in range(args.repeat)) * 1e6
    progress_us = min(asyncio.run(progress_path(args.devices)) for _ in range(args.repeat)) * 1e6
    print(f"sender settle path:  {settle_us:.1f} µs CPU per device")
    print(f"router fan-out path: {router_us:.1f} µs CPU per device")
    print(f"progress path:       {progress_us:.1f} µs CPU per status")


if __name__ == "__main__":
    main()
