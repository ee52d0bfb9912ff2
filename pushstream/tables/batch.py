"""Table writes of one batch, applied together.

Faust's `table[key] = value` costs one FutureMessage, one trip through the producer buffer, one
`publish_message` and one RocksDB put of the persisted offset per key, and while that buffer holds more than
100 changes Faust's conductor stops handing *any* topic's next message to *any* agent. A broadcast step
writes 500 users' memory at once, so a campaign held transactional intents behind its changelog traffic.
Here a batch's changes to one table partition are one RocksDB write batch, their changelog records go
straight to the producer (already encoded), and the persisted offset is written once per batch, when the
last of them is acked: the same at-least-once order as Faust (local store first, changelog before the input
offset is committed, since Faust flushes the producer before it commits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import faust
import orjson
from faust.types import TP, TableT
from rocksdict import WriteBatch

from pushstream.tables import table_key


class LocalTable:
    """Reads of one local partition of a table straight from its RocksDB: one lookup and `orjson.loads` per
    key, where Faust's `table.get` costs a `__contains__` and a `__getitem__` (two lookups) and its codec.
    Writes still go through `write_partition`, so it forwards what that needs."""

    def __init__(self, table: TableT, partition: int) -> None:
        self.table = table
        self.data = table.data
        self.changelog_topic = table.changelog_topic
        store: Any = table.data
        self._db = store._db_for_partition(partition)

    def get(self, key: bytes, default: Any = None) -> Any:
        raw = self._db.get(key)
        return default if raw is None else orjson.loads(raw)


class BatchView:
    """Read-through, write-back view of one table for the span of one batch."""

    def __init__(self, table: TableT | LocalTable) -> None:
        self.table = table
        self.changed: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key in self.changed:
            return self.changed[key]
        return self.table.get(table_key(key))

    def set(self, key: str, value: Any) -> None:
        self.changed[key] = value

    async def write(self, app: faust.App, partition: int) -> None:
        """Apply the changes to the table's local partition and its changelog (keys of this partition only:
        the caller's records are co-partitioned with the table)."""
        if self.changed:
            await write_partition(app, self.table, partition,
                                  {table_key(key): value for key, value in self.changed.items()})
            self.changed = {}


class MergingView(BatchView):
    """A BatchView for a table two coroutines write across an await (the router lanes' ``user_state``).

    ``write`` stores ``merge(value in the table now, value this view first read, value set)`` for each changed
    key, reading and writing with no await in between: a write made by the other coroutine after this view's
    read is merged into, never overwritten.
    """

    def __init__(self, table: TableT | LocalTable, merge: Callable[[Any, Any, Any], Any]) -> None:
        super().__init__(table)
        self.merge = merge
        self.read: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key in self.changed:
            return self.changed[key]
        value = self.table.get(table_key(key))
        self.read.setdefault(key, value)
        return value

    async def write(self, app: faust.App, partition: int) -> None:
        if self.changed:
            get = self.table.get
            # The reads and the local write below happen in one go (write_partition awaits only after its
            # RocksDB write), so nothing of the other lane's can land in between.
            merged = {table_key(key): self.merge(get(table_key(key)), self.read.get(key), value)
                      for key, value in self.changed.items()}
            await write_partition(app, self.table, partition, merged)
            self.changed = {}


async def write_partition(app: faust.App, table: TableT | LocalTable, partition: int,
                          changes: Mapping[bytes, Any]) -> None:
    """Write ``changes`` (None deletes) to one partition of ``table``: RocksDB and changelog."""
    if not changes:
        return
    store: Any = table.data
    db = store._db_for_partition(partition)
    key_index = store._key_index
    encoded: list[tuple[bytes, bytes | None]] = []
    batch = WriteBatch(raw_mode=True)
    dumps, option = orjson.dumps, orjson.OPT_NON_STR_KEYS  # Faust's json codec writes int keys as strings too
    for key, value in changes.items():
        raw = None if value is None else dumps(value, option=option)
        if raw is None:
            batch.delete(key)
        else:
            batch.put(key, raw)
        key_index[key] = partition
        encoded.append((key, raw))
    db.write(batch)
    topic = table.changelog_topic.get_topic_name()
    last, count = await _send_changelog(app, topic, partition, encoded)
    if last is not None:
        tp = TP(topic, partition)

        def persisted(fut: asyncio.Future[Any]) -> None:
            # Records of one partition are acked in order: the last batch's base offset plus its count covers
            # them all. A failed send leaves the old offset, so recovery reads more of the changelog, never less.
            if not fut.cancelled() and fut.exception() is None:
                store.set_persisted_offset(tp, fut.result().offset + count - 1)

        last.add_done_callback(persisted)


async def _send_changelog(app: faust.App, topic: str, partition: int, encoded: list[tuple[bytes, bytes | None]]
                          ) -> tuple[Any, int]:
    """Append the changelog records to producer batches of the partition (a few µs each, where Faust's
    ``send`` costs a signal, a future and a partitioner call per record). Returns the future of the last batch
    (its base offset) and that batch's record count. Faust's commit flushes this same aiokafka producer first,
    so the source offsets are never committed before these records are acked."""
    producer: Any = app.producer
    aio = producer._ensure_producer() if hasattr(producer, "_ensure_producer") else None
    if aio is None or not hasattr(aio, "create_batch"):  # not the aiokafka driver (tests' fakes): one by one
        last = None
        for key, raw in encoded:
            last = await producer.send(topic, key, raw, partition, None, None)
        return last, 1
    builder = aio.create_batch()
    for key, raw in encoded:
        if builder.append(key=key, value=raw, timestamp=None) is None:  # full: send it, start another
            await aio.send_batch(builder, topic, partition=partition)
            builder = aio.create_batch()
            if builder.append(key=key, value=raw, timestamp=None) is None:
                raise ValueError(f"a changelog record of {len(raw or b'')} bytes does not fit in a batch")
    count = builder.record_count()
    return await aio.send_batch(builder, topic, partition=partition), count
