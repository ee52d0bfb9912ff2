"""The batched table writer against a real RocksDB (rocksdict) and a recording producer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from rocksdict import Options, Rdict

from pushstream.tables.batch import BatchView, write_partition


class Store:
    offset_key = b"__faust\x00offset__"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, Rdict] = {}
        self._key_index: dict[bytes, int] = {}
        self.persisted: dict[int, int] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(str(self.root / str(partition)), options=Options(raw_mode=True))
        return self.dbs[partition]

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp.partition] = offset


class Producer:
    """Answers each send with a future the test resolves, like aiokafka's."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value, partition))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def make(tmp_path: Path) -> tuple[Any, Any, Store, Producer]:
    store, producer = Store(tmp_path), Producer()
    changelog = SimpleNamespace(get_topic_name=lambda: "p-user_state-changelog")
    table = SimpleNamespace(data=store, changelog_topic=changelog, get=lambda key: None)
    return SimpleNamespace(producer=producer), table, store, producer


async def test_changes_land_in_rocksdb_and_the_changelog_in_order(tmp_path: Path) -> None:
    app, table, store, producer = make(tmp_path)
    db = store._db_for_partition(3)
    db[b"demo/u-gone"] = b'{"old": 1}'
    await write_partition(app, table, 3, {b"demo/u-1": {"sent": {"n-1": 5}}, b"demo/u-gone": None,
                                          b"demo/u-2": {"counts": {}}})
    assert orjson.loads(cast(bytes, db[b"demo/u-1"])) == {"sent": {"n-1": 5}}
    assert db.get(b"demo/u-gone") is None
    assert producer.sent == [("p-user_state-changelog", b"demo/u-1", b'{"sent":{"n-1":5}}', 3),
                             ("p-user_state-changelog", b"demo/u-gone", None, 3),
                             ("p-user_state-changelog", b"demo/u-2", b'{"counts":{}}', 3)]
    assert store._key_index == {b"demo/u-1": 3, b"demo/u-gone": 3, b"demo/u-2": 3}
    # The persisted offset moves once, when the batch's last record is acked.
    assert store.persisted == {}
    producer.futures[0].set_result(SimpleNamespace(offset=40))
    await asyncio.sleep(0)
    assert store.persisted == {}
    producer.futures[2].set_result(SimpleNamespace(offset=42))
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert store.persisted == {3: 42}
    for db in store.dbs.values():
        db.close()


async def test_a_failed_changelog_send_leaves_the_persisted_offset(tmp_path: Path) -> None:
    app, table, store, producer = make(tmp_path)
    await write_partition(app, table, 0, {b"k": {"v": 1}})
    producer.futures[0].set_exception(RuntimeError("broker gone"))
    await asyncio.sleep(0)
    assert store.persisted == {}
    store.dbs[0].close()


async def test_view_reads_its_own_writes_then_writes_once(tmp_path: Path) -> None:
    app, table, store, producer = make(tmp_path)
    view = BatchView(table)
    assert view.get("demo/u-1") is None
    view.set("demo/u-1", {"a": 1})
    assert view.get("demo/u-1") == {"a": 1}
    await view.write(app, 1)
    await view.write(app, 1)  # nothing left to write
    assert [s[1] for s in producer.sent] == [b"demo/u-1"]
    store.dbs[1].close()


@pytest.mark.parametrize("value", [{"nested": {"list": [1, 2.5, "x", None, True]}}, [], "text", {7: "int key"}])
async def test_values_are_json_faust_reads_back(tmp_path: Path, value: Any) -> None:
    app, table, store, _ = make(tmp_path)
    await write_partition(app, table, 0, {b"k": value})
    # Faust's json codec reads what orjson wrote (and, like it, turns int keys into strings)
    assert json.loads(cast(bytes, store.dbs[0][b"k"])) == json.loads(json.dumps(value))
    store.dbs[0].close()


class BatchingProducer:
    """Faust's aiokafka driver as write_partition sees it: ``_ensure_producer`` gives aiokafka's producer, whose
    ``create_batch`` is aiokafka's real BatchBuilder (small here, so batches fill) and ``send_batch`` a future."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.batches: list[tuple[str, int, Any]] = []
        self.futures: list[asyncio.Future[Any]] = []

    def _ensure_producer(self) -> BatchingProducer:
        return self

    def create_batch(self) -> Any:
        from aiokafka.producer.message_accumulator import BatchBuilder

        return BatchBuilder(self.batch_size, 0, is_transactional=False)

    async def send_batch(self, builder: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.batches.append((topic, partition, builder))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


async def test_changelog_records_go_in_producer_batches_and_the_last_batch_covers_the_offset(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    producer = BatchingProducer(batch_size=400)
    changelog = SimpleNamespace(get_topic_name=lambda: "p-progress-changelog")
    table = SimpleNamespace(data=store, changelog_topic=changelog, get=lambda key: None)
    changes = {f"demo/n-1/u-{i}".encode(): {"d-1": ["d", 1_700_000_000_000 + i]} for i in range(20)}
    await write_partition(SimpleNamespace(producer=producer), table, 5, changes)  # type: ignore[arg-type]
    assert len(producer.batches) > 1  # 20 records do not fit in 400 bytes: more than one batch, in order
    assert {(topic, partition) for topic, partition, _ in producer.batches} == {("p-progress-changelog", 5)}
    counts = [builder.record_count() for _, _, builder in producer.batches]
    assert sum(counts) == 20
    for future in producer.futures[:-1]:
        future.set_result(SimpleNamespace(offset=0))
    await asyncio.sleep(0)
    assert store.persisted == {}  # only the last batch's ack moves it
    producer.futures[-1].set_result(SimpleNamespace(offset=100))  # that batch's base offset
    await asyncio.sleep(0)
    assert store.persisted == {5: 100 + counts[-1] - 1}
    assert all(orjson.loads(cast(bytes, store.dbs[5][key])) == value for key, value in changes.items())
