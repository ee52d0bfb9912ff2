"""pushstream.kafkatools against the real broker: offsets for times, a group's lag, range reads that end on
transactional partitions (commit markers, aborted records), and the demo's clean-up deleting its topics only."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pushstream.cli.demo import clean_up
from pushstream.kafkatools import KafkaSession, Span, read_range
from tests.integration.harness import BROKER, CREATED_PREFIXES, wait_for


async def make_topics(prefix: str, names: list[str], partitions: int = 2) -> None:
    CREATED_PREFIXES.append(prefix)  # removed at the end of the session if a test fails half-way
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name=f"{prefix}{n}", num_partitions=partitions, replication_factor=1)
                                   for n in names])
    finally:
        await admin.close()


async def test_offsets_for_time_lag_and_range_reads_over_transactions() -> None:
    prefix = f"k{uuid.uuid4().hex[:10]}."
    await make_topics(prefix, ["plain", "tx"])
    plain, tx = f"{prefix}plain", f"{prefix}tx"
    base = 1_700_000_000_000
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(plain, f"v{i}".encode(), partition=0, timestamp_ms=base + i * 1000)
    finally:
        await producer.stop()
    txp = AIOKafkaProducer(bootstrap_servers=BROKER, transactional_id=f"{prefix}txp")
    await txp.start()
    try:
        async with txp.transaction():
            await txp.send_and_wait(tx, b"kept-1", partition=1)
        await txp.begin_transaction()
        await txp.send_and_wait(tx, b"aborted", partition=1)
        await txp.abort_transaction()
        async with txp.transaction():
            await txp.send_and_wait(tx, b"kept-2", partition=1)
    finally:
        await txp.stop()

    async with KafkaSession(BROKER) as session:
        assert await session.partitions(plain) == [0, 1]
        at = dt.datetime.fromtimestamp((base + 2500) / 1000, dt.UTC)
        assert await session.offsets_for_time(plain, at) == {0: 3, 1: 0}
        assert await session.offsets_for_time(plain, at + dt.timedelta(days=1)) == {0: 5, 1: 0}
        ends = await session.end_offsets(tx)
        assert ends[1] == 6  # three records and three markers

        group = f"{prefix}group"
        consumer = AIOKafkaConsumer(bootstrap_servers=BROKER, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(plain, 0)])
            await consumer.commit({TopicPartition(plain, 0): 2})
        finally:
            await consumer.stop()
        assert await session.group_lag(group, [plain]) == {TopicPartition(plain, 0): 3, TopicPartition(plain, 1): 0}

    values = [r.value async for r in read_range(BROKER, plain, {0: Span(1, 4)})]
    assert values == [b"v1", b"v2", b"v3"]
    # Ends although the partition's last offsets are markers, and skips the aborted record.
    values = [r.value async for r in read_range(BROKER, tx, {0: Span(0, 0), 1: Span(0, ends[1])})]
    assert values == [b"kept-1", b"kept-2"]


def test_demo_clean_up_deletes_its_prefix_only(tmp_path: Path) -> None:
    ours, other = f"demo{uuid.uuid4().hex[:8]}.", f"k{uuid.uuid4().hex[:10]}."
    asyncio.run(make_topics(ours, ["pushstream.status", "pushstream-__assignor-__leader"], partitions=1))
    asyncio.run(make_topics(other, ["pushstream.status"], partitions=1))
    datadir = tmp_path / f"data-{ours}"
    (datadir / "v1").mkdir(parents=True)
    clean_up(BROKER, ours, datadir)

    async def topics() -> set[str]:
        async with KafkaSession(BROKER) as session:
            return await session.topics()

    # Deletion is asynchronous on the broker: poll its metadata until the topics are gone.
    left = wait_for(lambda: (t := asyncio.run(topics())) and not [n for n in t if n.startswith(ours)] and t,
                    timeout=30, what="the demo's topics deleted")
    assert f"{other}pushstream.status" in left
    assert not datadir.exists()
