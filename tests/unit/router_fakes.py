"""Fakes to drive the router's functions without Kafka or Faust: dict tables, topics, a gated outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from types import SimpleNamespace
from typing import Any

import orjson
from rocksdict import Options, Rdict

from pushstream.config import Settings
from pushstream.models import IntentBatch, encode
from pushstream.models.vocabulary import LANES, PLATFORMS
from pushstream.rules.keys import user_key
from pushstream.tables import table_key
from tests.unit.factories import device, notification, settings

USER = user_key("demo", "u-1")


class FakeTopic:
    def __init__(self, name: str) -> None:
        self.name, self.partitions = name, 1

    def get_topic_name(self) -> str:
        return self.name


class RocksTable:
    """A table over a real RocksDB per partition with a recording changelog: what the router's batched table
    writes (``pushstream.tables.batch``) write to, read back the way Faust's table reads."""

    offset_key = b"__faust\x00offset__"

    def __init__(self, name: str) -> None:
        self.root = tempfile.mkdtemp(prefix=f"pushstream-{name}-")
        self.dbs: dict[int, Rdict] = {}
        self._key_index: dict[bytes, int] = {}
        self.data = self
        self.changelog_topic = FakeTopic(f"{name}-changelog")

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(f"{self.root}/{partition}", options=Options(raw_mode=True))
        return self.dbs[partition]

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        pass

    def get(self, key: bytes, default: Any = None) -> Any:
        raw = self._db_for_partition(0).get(key)
        return default if raw is None else orjson.loads(raw)

    def __getitem__(self, key: bytes) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


class FakeProducer:
    async def send(self, topic: str, key: Any, value: Any, partition: Any, timestamp: Any, headers: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=0))
        return future


class GatedOutbox:
    """An outbox whose flush waits for ``gate`` (when given): the await between the read and the write."""

    def __init__(self, gate: asyncio.Event | None, flushed: list[str], lane: str) -> None:
        self.gate, self.flushed, self.lane = gate, flushed, lane
        self.records: list[tuple[str, Any, Any]] = []

    def add(self, to: Any, value: Any, *, key: Any = None, partition: Any = None) -> None:
        self.records.append((to.get_topic_name(), key, value))

    async def flush(self, *, wait: bool = True) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.flushed.append(self.lane)


def context(outboxes: list[GatedOutbox], app_settings: Settings | None = None,
            devices: dict[str, Any] | None = None) -> Any:
    tp = ("intents", 0)  # a TP: hashable
    app = SimpleNamespace(rebalancing=False, assignor=SimpleNamespace(assigned_actives=lambda: {tp}),
                          producer=FakeProducer(), consumer_generation_id=1)
    tables = SimpleNamespace(devices={table_key(USER): devices or {"d-1": device()}}, preferences=RocksTable("prefs"),
                             user_state=RocksTable("user_state"), cursors=RocksTable("cursors"),
                             cancelled=RocksTable("cancelled"))
    topics = SimpleNamespace(status_out=FakeTopic("status"), schedule=FakeTopic("schedule"), dlq=FakeTopic("dlq"),
                             deliveries={(p, lane): FakeTopic(f"deliveries.{p}.{lane}")
                                         for p in PLATFORMS for lane in LANES})
    progress: list[dict[str, Any]] = []  # the statuses the router hands to campaign progress
    ctx = SimpleNamespace(app=app, rt=SimpleNamespace(settings=app_settings or settings(), hooks={}), topics=topics,
                          tables=tables, outbox=lambda: outboxes.pop(0), progress=progress,
                          add_progress=lambda outbox, statuses: progress.extend(statuses))
    return ctx, tp


def event(tp: Any, offset: int, **n: Any) -> Any:
    now = dt.datetime.now(dt.UTC).timestamp()
    intent = IntentBatch(notification=notification(received_at=now, **n), user_ids=["u-1"],
                         origin=f"notifications:0:{offset}")
    return SimpleNamespace(value=encode(intent), message=SimpleNamespace(tp=tp, topic="intents", partition=0,
                                                                         offset=offset))


