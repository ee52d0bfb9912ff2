"""Kafka helpers shared by the CLI, the demo, the benchmarks and the tests: offsets (end, beginning, for a
time), a consumer group's lag, topic deletion by prefix, reading an offset range, following a topic, and the
printers (a progress bar, a flushed line). Plain aiokafka; nothing here imports Faust or loads a config."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import ConsumerRecord


class BrokerUnreachable(Exception):
    """The broker did not answer; the message is one line a person can act on."""


class TopicMissing(Exception):
    """A topic the command needs does not exist on the broker."""


def unreachable(bootstrap: str) -> BrokerUnreachable:
    return BrokerUnreachable(f"cannot reach the Kafka broker at {bootstrap}: is it running, and is kafka.broker "
                             "in the config right?")


@asynccontextmanager
async def started(client: Any, bootstrap: str) -> AsyncIterator[Any]:
    """Start an aiokafka client (consumer, producer or admin), turning a failed bootstrap into BrokerUnreachable;
    stop it at the end."""
    try:
        await client.start()
    except KafkaConnectionError:
        await _close(client)
        raise unreachable(bootstrap) from None
    try:
        yield client
    finally:
        await _close(client)


async def _close(client: Any) -> None:
    try:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()
        else:
            await client.stop()
    except KafkaError:
        pass  # closing a client that never connected


async def check_broker(bootstrap: str) -> None:
    """Raise BrokerUnreachable unless the broker answers a metadata request."""
    async with started(AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="pushstream-check"), bootstrap):
        pass


def parse_time(text: str) -> dt.datetime:
    """An ISO-8601 time (a trailing Z is UTC; a time without a zone is taken as UTC)."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time (e.g. 2026-12-01T18:00:00Z)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def epoch_ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


class KafkaSession:
    """An admin client and an unassigned consumer (no group) for offset and metadata questions.

    ``isolation_level="read_committed"`` (the default) makes end offsets the last stable offset: what a
    read_committed reader can reach."""

    def __init__(self, bootstrap: str, *, client_id: str = "pushstream-tools",
                 isolation_level: str = "read_committed") -> None:
        self.bootstrap, self.client_id, self.isolation_level = bootstrap, client_id, isolation_level
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> KafkaSession:
        # Built here, not in __init__: a client constructed and never started warns "Unclosed" at exit.
        async with AsyncExitStack() as stack:
            self.admin = await stack.enter_async_context(started(
                AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id), self.bootstrap))
            self.consumer = await stack.enter_async_context(started(
                AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                 client_id=self.client_id, isolation_level=self.isolation_level), self.bootstrap))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def topics(self) -> set[str]:
        return set(await self.admin.list_topics())

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partition numbers; TopicMissing when it does not exist."""
        described = await self.admin.describe_topics([topic])
        parts = [p["partition"] for d in described if d["topic"] == topic and not d.get("error_code")
                 for p in d["partitions"]]
        if not parts:
            raise TopicMissing(f"topic {topic} does not exist on {self.bootstrap}")
        return sorted(parts)

    async def _tps(self, topic: str, partitions: Iterable[int] | None) -> list[TopicPartition]:
        numbers = list(partitions) if partitions is not None else await self.partitions(topic)
        return [TopicPartition(topic, p) for p in numbers]

    async def end_offsets(self, topic: str, partitions: Iterable[int] | None = None) -> dict[int, int]:
        ends = await self.consumer.end_offsets(await self._tps(topic, partitions))
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def beginning_offsets(self, topic: str, partitions: Iterable[int] | None = None) -> dict[int, int]:
        starts = await self.consumer.beginning_offsets(await self._tps(topic, partitions))
        return {tp.partition: int(offset) for tp, offset in starts.items()}

    async def offsets_for_time(self, topic: str, when: dt.datetime,
                               partitions: Iterable[int] | None = None) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is at or after ``when``; the end offset when none is."""
        tps = await self._tps(topic, partitions)
        found = await self.consumer.offsets_for_times({tp: epoch_ms(when) for tp in tps})
        ends = await self.consumer.end_offsets(tps)
        return {tp.partition: int(found[tp].offset) if found.get(tp) is not None else int(ends[tp]) for tp in tps}

    async def group_lag(self, group: str, topics: Mapping[str, Iterable[int] | None] | Sequence[str]
                        ) -> dict[TopicPartition, int]:
        """Records of ``topics`` the group has not committed yet, per partition (a partition without a commit
        counts from offset 0). Committed offsets are read before end offsets: every pushstream stage writes its
        output before committing its input, so a lag of 0 read in this order means all was consumed."""
        wanted = topics if isinstance(topics, Mapping) else {t: None for t in topics}
        tps = [tp for topic, parts in wanted.items() for tp in await self._tps(topic, parts)]
        committed = await self.admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await self.consumer.end_offsets(tps)
        lag: dict[TopicPartition, int] = {}
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag[tp] = max(0, int(ends[tp]) - done)
        behind = {tp: int(ends[tp]) - lag[tp] for tp in tps if lag[tp]}
        if behind:
            # A transaction's commit marker takes an offset but is no record: a group that consumed the last
            # record of a partition whose tail is a marker commits one short of the end offset for ever.
            for tp in await self._only_markers(behind, ends):
                lag[tp] = 0
        return lag

    async def _only_markers(self, committed: Mapping[TopicPartition, int],
                            ends: Mapping[TopicPartition, int]) -> list[TopicPartition]:
        """The partitions with no record (of any transaction state) from the committed offset to the end."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    client_id=self.client_id, isolation_level="read_uncommitted")
        async with started(consumer, self.bootstrap):
            consumer.assign(list(committed))
            for tp, offset in committed.items():
                consumer.seek(tp, offset)
            found: set[TopicPartition] = set()
            waiting = set(committed)
            deadline = asyncio.get_running_loop().time() + 2.0
            while waiting and asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(*waiting, timeout_ms=200)
                for tp, records in batch.items():
                    if any(r.offset < ends[tp] for r in records):
                        found.add(tp)
                        waiting.discard(tp)
                for tp in list(waiting):
                    if await consumer.position(tp) >= ends[tp]:
                        waiting.discard(tp)  # read to the end: only markers were there
            return [tp for tp in committed if tp not in found and tp not in waiting]

    async def delete_topics(self, names: Iterable[str]) -> list[str]:
        names = sorted(set(names))
        for start in range(0, len(names), 100):
            await self.admin.delete_topics(names[start:start + 100])
        return names

    async def delete_topics_with_prefix(self, prefixes: str | Sequence[str]) -> list[str]:
        """Delete every topic whose name starts with one of ``prefixes`` (an empty prefix deletes nothing)."""
        wanted = tuple(p for p in ([prefixes] if isinstance(prefixes, str) else prefixes) if p)
        if not wanted:
            return []
        return await self.delete_topics(t for t in await self.topics() if t.startswith(wanted))


def lag_by_topic(lag: Mapping[TopicPartition, int]) -> dict[str, int]:
    """A ``group_lag`` answer summed per topic."""
    totals: dict[str, int] = {}
    for tp, n in lag.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + n
    return totals


async def delete_topics_with_prefix(bootstrap: str, prefixes: str | Sequence[str]) -> list[str]:
    if not any([prefixes] if isinstance(prefixes, str) else prefixes):
        # Nothing to delete, and no session: aiokafka's consumer, stopped right after its start, raises
        # CancelledError from its coordinator (a test session that made no deployment ended that way).
        return []
    async with KafkaSession(bootstrap) as session:
        return await session.delete_topics_with_prefix(prefixes)


async def end_offsets(bootstrap: str, topic: str, partitions: Iterable[int] | None = None) -> dict[int, int]:
    async with KafkaSession(bootstrap) as session:
        return await session.end_offsets(topic, partitions)


@dataclass(frozen=True)
class Span:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of one partition."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


async def read_range(bootstrap: str, topic: str, spans: Mapping[int, Span], *,
                     isolation_level: str = "read_committed", fetch_timeout_ms: int = 500
                     ) -> AsyncGenerator[ConsumerRecord[bytes, bytes], None]:
    """Every record of ``topic`` within ``spans`` (partition → offsets), partition by partition interleaved as
    the broker returns them. Ends when each partition's position reached its span's end (transaction markers
    and aborted records occupy offsets but are never yielded)."""
    todo = {TopicPartition(topic, p): span for p, span in spans.items() if span.size > 0}
    if not todo:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level=isolation_level, client_id="pushstream-range")
    async with started(consumer, bootstrap):
        consumer.assign(list(todo))
        for tp, span in todo.items():
            consumer.seek(tp, span.start)
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=fetch_timeout_ms)
            for tp, records in batch.items():
                if tp not in todo:
                    continue
                stop_at = todo[tp].end
                for record in records:
                    if record.offset >= stop_at:
                        break
                    yield record
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp].end:
                    del todo[tp]
                    consumer.pause(tp)


async def follow(bootstrap: str, topic: str, *, from_beginning: bool = False, stop: asyncio.Event | None = None,
                 isolation_level: str = "read_committed", fetch_timeout_ms: int = 300,
                 on_ready: Callable[[], None] | None = None
                 ) -> AsyncGenerator[ConsumerRecord[bytes, bytes], None]:
    """The records of every partition of ``topic``, from the beginning or from now on, until ``stop`` is set.
    ``on_ready`` is called once every partition is positioned: records published after it are seen."""
    async with KafkaSession(bootstrap) as session:
        partitions = await session.partitions(topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level=isolation_level, client_id="pushstream-follow")
    async with started(consumer, bootstrap):
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolves the reset now, not at the first fetch
        if on_ready is not None:
            on_ready()
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=fetch_timeout_ms)
            for tp in sorted(batch, key=lambda tp: tp.partition):
                for record in batch[tp]:
                    yield record


async def publish(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], *,
                  partitioner: Any = None) -> int:
    """Publish (key, value) pairs and wait for every ack; ``partitioner(partitions) -> int`` picks partitions
    (default: the client's key hash, or its sticky choice for records without key)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, enable_idempotence=True)
    async with started(producer, bootstrap):
        partitions = sorted(await producer.partitions_for(topic)) if partitioner else []
        futures = [await producer.send(topic, value, key=key,
                                       partition=partitioner(partitions) if partitioner else None)
                   for key, value in records]
        await asyncio.gather(*futures)
        return len(futures)


def say(text: str = "") -> None:
    """One line on stdout, flushed at once: a script's narration stays in order with its child processes'."""
    print(text, flush=True)


class Progress:
    """Progress of ``total`` units: on a terminal a bar with rate and ETA redrawn in place, otherwise a plain
    line every ``interval`` seconds (and one at the end)."""

    def __init__(self, total: int, *, label: str = "", stream: IO[str] | None = None, interval: float = 2.0,
                 tty: bool | None = None, width: int = 30) -> None:
        self.total, self.label, self.width = max(0, total), label, width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if not self.tty else min(interval, 0.1)
        self.done = 0
        self.started = time.monotonic()
        self._last = float("-inf")
        self._shown: int | None = None  # `done` when the last line was written

    def rate(self, now: float | None = None) -> float:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        now = now if now is not None else time.monotonic()
        rate = self.rate(now)
        remaining = max(0, self.total - self.done)
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "?"
        share = self.done / self.total if self.total else 1.0
        head = f"{self.label} " if self.label else ""
        counts = f"{self.done:,}/{self.total:,} ({share:.0%}) {rate:,.0f}/s ETA {eta}"
        if not self.tty:
            return f"{head}{counts}"
        filled = round(self.width * min(1.0, share))
        return f"{head}[{'#' * filled}{'.' * (self.width - filled)}] {counts}"

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write(now)

    def _write(self, now: float) -> None:
        self._shown = self.done
        if self.tty:
            self.stream.write("\r" + self.line(now) + "\x1b[K")
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty or self._shown != self.done:
            self._write(time.monotonic())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


__all__ = [
    "BrokerUnreachable",
    "KafkaSession",
    "Progress",
    "Span",
    "TopicMissing",
    "check_broker",
    "delete_topics_with_prefix",
    "end_offsets",
    "follow",
    "lag_by_topic",
    "parse_time",
    "publish",
    "read_range",
    "say",
    "started",
    "unreachable",
]
