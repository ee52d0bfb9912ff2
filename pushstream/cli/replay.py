"""`pushstream replay`: re-publish a range of a topic's records (keys, values, headers and timestamps kept) to
the same topic or another one, with progress (contract §5).

Replaying `pushstream.notifications` is safe: the router remembers per user which notification ids it routed
(`user_state`), so a replayed request reaches only users it never routed (see docs/operations.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaProducer

from pushstream.config import Settings
from pushstream.kafkatools import KafkaSession, Progress, Span, TopicMissing, parse_time, read_range, started
from pushstream.topology import kafka_bootstrap

REPLAY_HEADER = "pushstream-replay-of"  # added to each copy: "<topic>:<partition>:<offset>" of the original
IN_FLIGHT = 1000  # sends awaited at a time


class UsageError(Exception):
    """Arguments that cannot work together or a value that does not parse."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "replay", help="re-publish a range of a topic's records (to the same topic or --into another)",
        description="Re-publish the records of a topic from an offset or a time (up to --to-time, else to the "
                    "current end). Keys, values, headers and timestamps are kept; each copy gets a "
                    f"{REPLAY_HEADER} header. Topic names may be given with or without the configured prefix.")
    parser.add_argument("--topic", required=True, help="source topic, e.g. pushstream.notifications")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-offset", type=int, metavar="N", help="first offset (of each partition replayed)")
    start.add_argument("--from-time", metavar="ISO", help="first record at or after this time, e.g. 2026-12-01T18:00Z")
    parser.add_argument("--to-time", metavar="ISO", help="stop before the first record at or after this time")
    parser.add_argument("--partition", type=int, metavar="P", help="only this partition")
    parser.add_argument("--into", metavar="T2", help="publish to this topic instead of the source")
    parser.add_argument("--dry-run", action="store_true", help="count the records per partition, publish nothing")


def resolve_topic(settings: Settings, name: str, known: set[str] | frozenset[str] = frozenset()) -> str:
    """The broker-side name: a name that already carries the prefix stays; a bare name (a pushstream topic of
    the contract or of topics.yaml) gets the prefix; any other name is used as given."""
    prefix = settings.kafka.topic_prefix
    if not prefix or name.startswith(prefix):
        return name
    if name in known or name.startswith("pushstream"):
        return settings.topic(name)
    return name


async def plan(session: KafkaSession, topic: str, args: argparse.Namespace) -> dict[int, Span]:
    partitions = await session.partitions(topic)
    if args.partition is not None:
        if args.partition not in partitions:
            raise UsageError(f"{topic} has no partition {args.partition} (it has {len(partitions)})")
        partitions = [args.partition]
    begins = await session.beginning_offsets(topic, partitions)
    ends = await session.end_offsets(topic, partitions)
    if args.from_offset is not None:
        if args.from_offset < 0:
            raise UsageError("--from-offset must be 0 or more")
        starts = {p: max(begins[p], args.from_offset) for p in partitions}
    else:
        starts = await session.offsets_for_time(topic, parse_time(args.from_time), partitions)
    stops = ends
    if args.to_time:
        until = parse_time(args.to_time)
        if args.from_time and until <= parse_time(args.from_time):
            raise UsageError("--to-time must be after --from-time")
        stops = await session.offsets_for_time(topic, until, partitions)
    return {p: Span(min(starts[p], ends[p]), min(stops[p], ends[p])) for p in partitions}


async def replay(settings: Settings, known: set[str], args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    bootstrap = kafka_bootstrap(settings.kafka.broker)
    source = resolve_topic(settings, args.topic, known)
    target = resolve_topic(settings, args.into, known) if args.into else source
    async with KafkaSession(bootstrap, client_id="pushstream-replay") as session:
        spans = await plan(session, source, args)
        # A copy keeps its partition number when the target has it; otherwise the producer places it by key.
        target_partitions = set(await session.partitions(target)) if target != source else set(spans)
    total = sum(span.size for span in spans.values())
    verb = "would re-publish" if args.dry_run else "re-publishing"
    ranges = ", ".join(f"p{p} {s.start}..{s.end}" for p, s in sorted(spans.items()) if s.size)
    print(f"{source}: {verb} offsets {ranges} into {target}" if total else f"{source}: nothing in that range",
          file=sys.stderr)
    counts: Counter[int] = Counter()
    progress = Progress(total, label="replay")
    if args.dry_run:
        async for record in read_range(bootstrap, source, spans):
            counts[record.partition] += 1
            progress.advance()
    else:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                    client_id="pushstream-replay")
        async with started(producer, bootstrap):
            pending: list[asyncio.Future[Any]] = []
            async for record in read_range(bootstrap, source, spans):
                headers = [*(record.headers or ()),
                           (REPLAY_HEADER, f"{source}:{record.partition}:{record.offset}".encode())]
                pending.append(await producer.send(
                    target, record.value, key=record.key, headers=headers, timestamp_ms=record.timestamp,
                    partition=record.partition if record.partition in target_partitions else None))
                counts[record.partition] += 1
                progress.advance()
                if len(pending) >= IN_FLIGHT:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
    progress.finish()
    for p in sorted(spans):
        if spans[p].size or args.partition is not None:
            print(f"partition {p}: {records(counts[p])} (offsets {spans[p].start}..{spans[p].end})", file=out)
    done = "would be re-published" if args.dry_run else "re-published"
    print(f"{records(sum(counts.values()))} of {source} {done} to {target}", file=out)
    return 0


def records(n: int) -> str:
    return f"{n} record" if n == 1 else f"{n} records"


def run(args: argparse.Namespace) -> int:
    from pushstream.runtime import load_runtime

    rt = load_runtime(args.config)
    try:
        for text in (args.from_time, args.to_time):
            if text:
                parse_time(text)  # before connecting: a typo is a usage error, not a broker round trip
        return asyncio.run(replay(rt.settings, set(rt.layout.topics), args))
    except (UsageError, ValueError, TopicMissing) as exc:
        print(f"pushstream replay: {exc}", file=sys.stderr)
        return 2


__all__ = ["add_parser", "replay", "resolve_topic", "run"]
