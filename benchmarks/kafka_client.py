"""CPU per record of the sender role's Kafka pattern, aiokafka against confluent-kafka (librdkafka).

The pattern: transactions of `--per-txn` status-sized records (lz4, acks=all, idempotent), each committed with
an input offset, as `SenderService._commit` does; records appended to one batch per partition (aiokafka
`BatchBuilder`, the sender's `_send_all`) or produced one by one (confluent-kafka, which batches in C). Then
the records consumed back (aiokafka `getmany` against confluent-kafka `consume`). CPU is the whole process's
(`time.process_time`, librdkafka's threads included). Needs a broker:

    python -m benchmarks.kafka_client [--records 100000] [--bootstrap 127.0.0.1:9092]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import orjson

PARTITIONS = 12


def record(i: int) -> bytes:
    return orjson.dumps({"notification_id": "campaign-1", "app_id": "demo", "user_id": f"user-{i:07d}",
                         "device_id": f"user-{i:07d}-ios", "platform": "apns", "status": "delivered",
                         "reason": None, "at": "2026-12-02T16:00:00.000Z", "variant": None})


async def make_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def aiokafka_produce(bootstrap: str, topic: str, offsets_topic: str, values: list[bytes], per_txn: int
                           ) -> float:
    from aiokafka import AIOKafkaProducer, TopicPartition
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                compression_type="lz4", linger_ms=5, transactional_id=f"bench-{uuid.uuid4()}")
    await producer.start()
    group = f"bench-{uuid.uuid4()}"
    try:
        async with producer.transaction():  # warm-up, untimed: metadata and leaders of the new topic
            await asyncio.gather(*[await producer.send(topic, b"warm-up", partition=p) for p in range(PARTITIONS)])
        start = time.process_time()
        for first in range(0, len(values), per_txn):
            async with producer.transaction():
                builders: dict[int, Any] = {}
                for i in range(first, min(first + per_txn, len(values))):
                    p = i % PARTITIONS
                    builder = builders.get(p)
                    if builder is None:
                        builder = builders[p] = producer.create_batch()
                    if builder.append(key=values[i][40:52], value=values[i], timestamp=None) is None:
                        await producer.send_batch(builder, topic, partition=p)
                        builder = builders[p] = producer.create_batch()
                        builder.append(key=values[i][40:52], value=values[i], timestamp=None)
                for p, builder in builders.items():
                    await producer.send_batch(builder, topic, partition=p)
                await producer.send_offsets_to_transaction({TopicPartition(offsets_topic, 0): first + 1}, group)
        return time.process_time() - start
    finally:
        await producer.stop()


def confluent_produce(bootstrap: str, topic: str, offsets_topic: str, values: list[bytes], per_txn: int) -> float:
    from confluent_kafka import Consumer, Producer, TopicPartition
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bench-{uuid.uuid4()}",
                         "compression.type": "lz4", "linger.ms": 5, "enable.idempotence": True})
    group = f"bench-{uuid.uuid4()}"
    metadata = Consumer({"bootstrap.servers": bootstrap, "group.id": group}).consumer_group_metadata()
    producer.init_transactions()
    producer.begin_transaction()  # warm-up, untimed
    for p in range(PARTITIONS):
        producer.produce(topic, b"warm-up", partition=p)
    producer.commit_transaction()
    start = time.process_time()
    for first in range(0, len(values), per_txn):
        producer.begin_transaction()
        for i in range(first, min(first + per_txn, len(values))):
            producer.produce(topic, values[i], values[i][40:52], partition=i % PARTITIONS)
        producer.send_offsets_to_transaction([TopicPartition(offsets_topic, 0, first + 1)], metadata)
        producer.commit_transaction()
    return time.process_time() - start


async def aiokafka_consume(bootstrap: str, topic: str, count: int) -> float:
    from aiokafka import AIOKafkaConsumer
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4()}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        start, seen = time.process_time(), 0
        while seen < count:
            polled = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for messages in polled.values():
                for m in messages:
                    seen += m.value != b"warm-up"
        return time.process_time() - start
    finally:
        await consumer.stop()


def confluent_consume(bootstrap: str, topic: str, count: int) -> float:
    from confluent_kafka import Consumer
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    try:
        start, seen = time.process_time(), 0
        while seen < count:
            for m in consumer.consume(num_messages=1000, timeout=1.0):
                if m.error() is None:
                    seen += m.value() != b"warm-up"
        return time.process_time() - start
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--per-txn", type=int, default=1_000, help="records per transaction (one sender poll)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    args = parser.parse_args()
    values = [record(i) for i in range(args.records)]
    run = uuid.uuid4().hex[:8]
    names = {c: f"bench-client-{c}-{run}" for c in ("aiokafka", "confluent", "offsets")}
    asyncio.run(make_topics(args.bootstrap, list(names.values())))
    results = {
        "aiokafka produce": asyncio.run(aiokafka_produce(args.bootstrap, names["aiokafka"], names["offsets"],
                                                         values, args.per_txn)),
        "confluent-kafka produce": confluent_produce(args.bootstrap, names["confluent"], names["offsets"], values,
                                                     args.per_txn),
        "aiokafka consume": asyncio.run(aiokafka_consume(args.bootstrap, names["aiokafka"], args.records)),
        "confluent-kafka consume": confluent_consume(args.bootstrap, names["confluent"], args.records),
    }
    print(f"{args.records:,} records of {len(values[0])} bytes, {args.per_txn:,} per transaction, lz4")
    for name, seconds in results.items():
        print(f"  {name:<24} {seconds * 1e6 / args.records:6.2f} µs CPU/record")


if __name__ == "__main__":
    main()
