"""`pushstream dlq redrive [--reason R] [--since T] [--dry-run]` (contract §5): re-send dead-lettered deliveries
once their cause is fixed (a provider outage over, a credential replaced, a provider section added).

The decisions are `pushstream.rules.redrive`'s. Here: read the DLQ up to its current end, group the letters by
source record and reason, read those source records back (they hold the devices' addresses or the
notification, which the dead letters do not), and publish per group one delivery batch to the lane's delivery
topic, placed by its batch id so the sender that owns it remembers whether it sent it already, or one intent
back to the source intent's partition, where the router remembers whether it routed that origin."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter, defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from pushstream.agents.senders import delivery_topic, retry_topic
from pushstream.config import Settings
from pushstream.kafkatools import KafkaSession, Progress, Span, TopicMissing, parse_time, read_range, started
from pushstream.models import DeliveryBatch, IntentBatch, encode
from pushstream.models.notifications import lane_of
from pushstream.models.vocabulary import LANES, PLATFORMS
from pushstream.rules.keys import partition_for
from pushstream.rules.redrive import (
    NOT_A_DELIVERY,
    REDRIVEN,
    Choice,
    Source,
    choose,
    redrive_batch,
    redrive_intent,
)
from pushstream.rules.retry import RETRY_BANDS
from pushstream.topology import TopicLayout, kafka_bootstrap


def add_parser(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="dead letters")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)
    redrive = sub.add_parser(
        "redrive", help="re-send dead-lettered deliveries (after the cause is fixed)",
        description="Re-send the devices of dead-lettered deliveries, each once (running it again sends "
                    "nothing twice). Other dead letters (malformed input and the like) are counted, not re-sent.")
    redrive.add_argument("--reason", metavar="R", help="only this reason, or this class of reasons "
                                                        "(retries_exhausted matches retries_exhausted:*)")
    redrive.add_argument("--since", metavar="T", help="only letters written at or after this time (ISO)")
    redrive.add_argument("--dry-run", action="store_true", help="count by reason, publish nothing")


def sender_topics(settings: Settings) -> set[str]:
    """Broker-side names of every delivery and retry topic: the sources of a sender's dead letters."""
    names = {delivery_topic(p, lane) for p in PLATFORMS for lane in LANES}
    names |= {retry_topic(p, lane, band) for p in PLATFORMS for lane in LANES for band in RETRY_BANDS}
    return {settings.topic(n) for n in names}


def intent_topics(settings: Settings) -> set[str]:
    """Broker-side names of the intents topics: the sources of the router's dead letters about one device."""
    return {settings.topic("pushstream.intents"), settings.topic("pushstream.intents.bulk")}


async def read_sources(bootstrap: str, wanted: set[Source]) -> dict[Source, dict[str, Any]]:
    """The source records still in their topics (retention may have removed some), decoded."""
    if not wanted:
        return {}
    spans: dict[str, dict[int, Span]] = defaultdict(dict)
    for source in wanted:
        span = spans[source.topic].get(source.partition)
        low, high = (source.offset, source.offset + 1) if span is None else (
            min(span.start, source.offset), max(span.end, source.offset + 1))
        spans[source.topic][source.partition] = Span(low, high)
    found: dict[Source, dict[str, Any]] = {}
    async with KafkaSession(bootstrap, client_id="pushstream-redrive") as session:
        for topic, by_partition in spans.items():
            begins = await session.beginning_offsets(topic, list(by_partition))
            ends = await session.end_offsets(topic, list(by_partition))
            for p, span in list(by_partition.items()):
                by_partition[p] = Span(max(span.start, begins[p]), min(span.end, ends[p]))
    for topic, by_partition in spans.items():
        async for record in read_range(bootstrap, topic, by_partition):
            key = Source(topic, record.partition, record.offset)
            if key in wanted and record.value is not None:
                try:
                    found[key] = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue
    return found


async def redrive(settings: Settings, layout: TopicLayout, args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    bootstrap = kafka_bootstrap(settings.kafka.broker)
    dlq = settings.topic("pushstream.dlq")
    since = parse_time(args.since) if args.since else None
    async with KafkaSession(bootstrap, client_id="pushstream-redrive") as session:
        partitions = await session.partitions(dlq)
        begins = await session.beginning_offsets(dlq, partitions)
        ends = await session.end_offsets(dlq, partitions)
    spans = {p: Span(begins[p], ends[p]) for p in partitions}
    progress = Progress(sum(s.size for s in spans.values()), label="dlq read")
    topics, intents = sender_topics(settings), intent_topics(settings)
    choices: list[Choice] = []
    async for record in read_range(bootstrap, dlq, spans):
        progress.advance()
        try:
            letter = orjson.loads(record.value) if record.value is not None else {}
        except orjson.JSONDecodeError:
            letter = {}
        if not isinstance(letter, dict):
            letter = {}
        choices.append(choose(letter, delivery_topics=topics, intent_topics=intents, reason=args.reason,
                              since=since))
    progress.finish()

    groups: dict[tuple[Source, str], set[tuple[str, str]]] = defaultdict(set)
    skipped: Counter[str] = Counter()
    for choice in choices:
        if choice.kind == REDRIVEN and choice.source is not None and choice.user_id and choice.device_id:
            groups[(choice.source, choice.reason)].add((choice.user_id, choice.device_id))
        elif choice.kind == NOT_A_DELIVERY:
            skipped[choice.reason] += 1
    sources = await read_sources(bootstrap, {source for source, _ in groups})
    batches: list[tuple[str, DeliveryBatch]] = []
    reroutes: list[tuple[Source, IntentBatch]] = []
    by_reason: Counter[str] = Counter()
    gone: Counter[str] = Counter()
    for (source, reason), devices in sorted(groups.items(), key=lambda g: (g[0][0].topic, g[0][0].partition,
                                                                            g[0][0].offset, g[0][1])):
        value = sources.get(source)
        if source.topic in intents:
            planned = redrive_intent(value, source, reason, devices) if isinstance(value, dict) else None
            try:
                intent = IntentBatch(**planned) if planned is not None else None
            except Exception:  # a source record that is not an intent after all
                intent = None
            if intent is None:
                gone[reason] += len(devices)
            else:
                by_reason[reason] += len(devices)
                reroutes.append((source, intent))
            continue
        built = redrive_batch(value, source, reason, devices) if isinstance(value, dict) else None
        if built is None:
            gone[reason] += len(devices)
            continue
        try:
            batch = DeliveryBatch(**built)
        except Exception:  # a source record that is not a delivery batch after all
            gone[reason] += len(devices)
            continue
        by_reason[reason] += len(batch.items)
        batches.append((delivery_topic(batch.platform, lane_of(batch.channel)), batch))

    verb = "would re-send" if args.dry_run else "re-sent"
    for reason, n in sorted(by_reason.items()):
        print(f"{reason}: {verb} {n} device{'s' if n != 1 else ''}", file=out)
    for reason, n in sorted(gone.items()):
        print(f"{reason}: {n} device{'s' if n != 1 else ''} not re-sendable (source record gone)", file=out)
    for reason, n in sorted(skipped.items()):
        print(f"{reason}: {n} dead letter{'s' if n != 1 else ''} not a delivery (left alone)", file=out)
    if not args.dry_run and (batches or reroutes):
        sending = Progress(len(batches) + len(reroutes), label="redrive")
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                    client_id="pushstream-redrive")
        async with started(producer, bootstrap):
            pending = []
            for topic, batch in batches:
                assert batch.batch_id is not None
                # Placed by batch id: the same batch always lands where the same sender's memory is.
                partition = partition_for(batch.batch_id, layout.partitions(topic))
                pending.append(await producer.send(settings.topic(topic), encode(batch),
                                                   key=batch.batch_id.encode(), partition=partition))
                sending.advance()
            for source, intent in reroutes:
                # Back to the intent's own partition: the user's partition, where the router holds its devices.
                key = f"{intent.notification.get('app_id')}/{intent.notification.get('id')}"  # as the planner
                pending.append(await producer.send(source.topic, encode(intent), key=key.encode(),
                                                   partition=source.partition))
                sending.advance()
            await asyncio.gather(*pending)
        sending.finish()
    total = sum(by_reason.values())
    records = len(batches) + len(reroutes)
    print(f"{total} device{'s' if total != 1 else ''} {verb} in {records} batch"
          f"{'es' if records != 1 else ''}", file=out)
    return 0


def run(args: argparse.Namespace) -> int:
    from pushstream.runtime import load_runtime

    rt = load_runtime(args.config)
    try:
        if args.since:
            parse_time(args.since)
        return asyncio.run(redrive(rt.settings, rt.layout, args))
    except (ValueError, TopicMissing) as exc:
        print(f"pushstream dlq redrive: {exc}", file=sys.stderr)
        return 2


__all__ = ["add_parser", "redrive", "run", "sender_topics"]
