"""End-to-end benchmark: local Kafka, the fake providers in benchmark mode, real pushstream processes, and traffic.

Deployment (--deployment): `split` (default) runs one router process (`pushstream worker --role router`) and
one sender process per lane (`--role sender --lane transactional|bulk`, plus --bulk-senders - 1 more bulk
ones); `all-in-one` runs --workers `faust -A pushstream.app worker` processes (router and senders together).

Phases (docs/benchmarks.md explains every figure):
  1. registration: U users x D devices published like an external producer (large batches, random
     partitions); rate = devices / (first publish -> the worker group has committed everything on devices,
     user-events and token-claims);
  2. campaign: one marketing broadcast to every device while a steady trickle of transactional
     notifications flows; deliveries/s from the status topic, trickle latency, CPU per process, peak RSS;
  3. recovery: worker 1 (the router when split) SIGKILLed / SIGTERMed / restarted on a wiped data dir, time
     until /readyz is 200.

`python -m benchmarks.e2e --help` or `pushstream bench --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import platform as host_platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pushstream import kafkatools
from pushstream.agents.senders import delivery_topic, retry_topic
from pushstream.cli.demo import say
from pushstream.config import Settings, load_settings
from pushstream.models.status import FINAL_STATUSES
from pushstream.rules.retry import RETRY_BANDS
from pushstream.testing.fakes import webpush_subscription
from pushstream.testing.fakes.control import FakesClient, FakesProcess
from pushstream.testing.stack import WorkerProcess, dev_app_config, free_port, wait_until, wait_until_async
from pushstream.topology import TopicLayout, apply_topics, kafka_bootstrap, load_layout

ROOT = Path(__file__).resolve().parents[1]
APP = "bench"
API_KEY = "bench-key"
PLATFORMS = ("apns", "fcm", "webpush")
LOCALES = ("en-US", "de-DE", "fr-FR", "en-GB")
KAFKA_RUN_DIR = Path.home() / ".cache" / "pushstream"  # scripts/kafka/ctl: kafka-run-<port>/kafka.pid
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROGRESS_EVERY = 2.0
# Status values are orjson dumps of StatusEvent: matching bytes avoids a JSON parse per campaign record.
STATUS_FIELD = re.compile(rb'"status":"([a-z_]+)"')
DEVICE_FIELD = re.compile(rb'"device_id":"([^"]+)"')
PLATFORM_FIELD = re.compile(rb'"platform":"([a-z]+)"')
FINAL = frozenset(s.value.encode() for s in FINAL_STATUSES)
TX_PREFIX = "tx-"
WEBPUSH_KEY_POOL = 8  # benchmark-mode fakes do not decrypt, so subscriptions may share key pairs


# -- options -------------------------------------------------------------------------------------------


def parse_mix(text: str) -> dict[str, float]:
    """`apns=50,fcm=40,webpush=10` -> weights per platform."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in PLATFORMS:
            raise argparse.ArgumentTypeError(f"unknown platform {name!r} in --mix (use {', '.join(PLATFORMS)})")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--mix: {part!r} is not platform=weight") from None
    if not mix or sum(mix.values()) <= 0 or min(mix.values()) < 0:
        raise argparse.ArgumentTypeError("--mix needs at least one positive weight")
    return mix


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushstream bench",
        description="End-to-end benchmark against local Kafka and the fake providers (docs/benchmarks.md).")
    parser.add_argument("--users", type=int, default=5000, help="registered users (default 5000)")
    parser.add_argument("--devices-per-user", type=int, default=2, help="devices per user (default 2)")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("apns=50,fcm=40,webpush=10"),
                        help="platform weights of the devices (default apns=50,fcm=40,webpush=10)")
    parser.add_argument("--tx-users", type=int, default=100,
                        help="users (of the population) with one device per platform that the trickle targets")
    parser.add_argument("--deployment", choices=("split", "all-in-one"), default="split",
                        help="split: a router process and sender processes per lane (default); all-in-one: "
                             "--workers processes running router and senders together")
    parser.add_argument("--bulk-senders", type=int, default=1,
                        help="split: bulk-lane sender processes (default 1; the transactional lane has one)")
    parser.add_argument("--workers", type=int, default=1, help="all-in-one: worker processes (default 1)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions of every topic (default: as in topics.yaml)")
    parser.add_argument("--trickle-rate", type=float, default=5.0,
                        help="transactional notifications per second during the campaign (default 5)")
    parser.add_argument("--idle-seconds", type=float, default=3.0,
                        help="trickle before the campaign starts, for an idle latency baseline (default 3)")
    parser.add_argument("--provider-latency", type=float, default=0.0,
                        help="seconds every fake provider waits before answering (default 0)")
    parser.add_argument("--session-timeout", type=float, default=None,
                        help="workers' Kafka session timeout in seconds (BROKER_SESSION_TIMEOUT; default Faust's "
                             "60): bounds how long a SIGKILLed member blocks the group")
    parser.add_argument("--recovery", default="sigkill,sigterm,wipe",
                        help="restart scenarios for worker 1 (split: the router), comma-separated from sigkill, "
                             "sigterm, wipe; 'none' skips them (default all three)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="deadline in seconds for each phase (worker start, drain, campaign, restart)")
    parser.add_argument("--broker", default="127.0.0.1:9092", help="Kafka bootstrap (default 127.0.0.1:9092)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench",
                        help="config, logs, data dirs and fakes setup (default ./var/bench)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the population and the trickle")
    parser.add_argument("--keep", action="store_true",
                        help="leave workers, fakes, topics and data dirs in place at the end")
    return parser


# -- the population ------------------------------------------------------------------------------------


@dataclass
class Population:
    values: list[bytes]
    by_platform: Counter[str]
    tx_users: list[str]
    tx_devices: dict[str, int]  # statuses each trickle notification to that user yields

    users: int = 0
    per_user: int = 0

    @property
    def devices(self) -> int:
        return len(self.values)

    def device_ids(self) -> set[bytes]:
        """Every device id of the population (as build_population names them), for the exactly-once check."""
        ids: set[bytes] = set()
        for i in range(self.users):
            user = f"u{i:07d}"
            ids.update(f"{user}-{j}".encode() for j in range(self.tx_devices.get(user, self.per_user)))
        return ids


def build_population(users: int, per_user: int, mix: dict[str, float], tx_users: int, setup: dict[str, Any],
                     rng: random.Random) -> Population:
    """Device registrations, encoded up front so the timed publish is not slowed by generating them."""
    names, weights = list(mix), list(mix.values())
    seed = bytes.fromhex(setup["webpush_seed"])
    pool = [webpush_subscription(setup["webpush_origin"], seed, f"bench-key-{k}") for k in range(WEBPUSH_KEY_POOL)]
    values: list[bytes] = []
    by_platform: Counter[str] = Counter()
    tx: dict[str, int] = {}
    for i in range(users):
        user = f"u{i:07d}"
        if i < tx_users:
            platforms = [*PLATFORMS, *rng.choices(names, weights, k=max(0, per_user - len(PLATFORMS)))]
            tx[user] = len(platforms)
        else:
            platforms = rng.choices(names, weights, k=per_user)
        for j, name in enumerate(platforms):
            n = len(values)
            event: dict[str, Any] = {"type": "register", "app_id": APP, "user_id": user, "device_id": f"{user}-{j}",
                                     "platform": name, "locale": LOCALES[i % len(LOCALES)]}
            if name == "apns":
                event["token"] = f"{n:064x}"
            elif name == "fcm":
                event["token"] = f"fcm-{n:09d}"
            else:
                key = pool[n % len(pool)]
                event["subscription"] = {"endpoint": key["endpoint"].rsplit("/", 1)[0] + f"/sub-{n:09d}",
                                         "keys": key["keys"]}
            # A compact copy: each orjson result keeps its ~4 KiB output buffer alive (4 GB of RSS at 1M).
            values.append(bytes(memoryview(orjson.dumps(event))))
            by_platform[name] += 1
    return Population(values=values, by_platform=by_platform, tx_users=list(tx), tx_devices=tx, users=users,
                      per_user=per_user)


# -- processes and their cost --------------------------------------------------------------------------


BIN = Path(sys.executable).parent
LANES = ("transactional", "bulk")


@dataclass
class RoleProcess(WorkerProcess):
    """A pushstream process of the benchmark: `pushstream worker --role router|sender ...` (split) or, without
    ``argv``, the all-in-one `faust -A pushstream.app worker` of WorkerProcess."""

    name: str = "worker1"
    argv: list[str] | None = None

    def start(self) -> RoleProcess:
        if self.argv is None:
            super().start()
            return self
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHSTREAM_")}
        env["PUSHSTREAM_CONFIG"] = str(self.config_path)
        # Static membership and transactional ids come from it: one per process, kept across restarts.
        env["PUSHSTREAM_WORKER_ID"] = self.name
        env.update(self.extra_env or {})
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([str(BIN / "pushstream"), "worker", "--no-apply", *self.argv], env=env,
                                            cwd=self.config_path.parent, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


def make_processes(args: argparse.Namespace, config_path: Path, run_dir: Path,
                   extra_env: dict[str, str] | None) -> list[RoleProcess]:
    """The pushstream processes of the deployment; the first one is the one the recovery phase restarts."""
    def proc(name: str, argv: list[str] | None, port: int) -> RoleProcess:
        return RoleProcess(config_path=config_path, datadir=run_dir / f"data-{name}", web_port=port,
                           log_path=run_dir / f"{name}.log", extra_env=extra_env, name=name, argv=argv)

    # Ephemeral ports: runs side by side must not race for the same preferred one.
    if args.deployment == "all-in-one":
        return [proc(f"worker{i + 1}", None, free_port(0)) for i in range(args.workers)]
    port = free_port(0)
    out = [proc("router", ["--role", "router", "--datadir", str(run_dir / "data-router"), "-l", "info",
                           "--web-host", "127.0.0.1", "--web-port", str(port)], port)]
    senders = [("sender-transactional", "transactional")]
    senders += [(f"sender-bulk-{i + 1}", "bulk") for i in range(args.bulk_senders)]
    for name, lane in senders:
        port = free_port(0)
        out.append(proc(name, ["--role", "sender", "--lane", lane, "--web-port", str(port)], port))
    return out


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a live process (threads included: RocksDB, the JVM), from /proc/<pid>/stat."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces; fields after it are fixed
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def broker_pid(bootstrap: str) -> int | None:
    port = bootstrap.split(",")[0].rsplit(":", 1)[-1]
    try:
        pid = int((KAFKA_RUN_DIR / f"kafka-run-{port}" / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None  # e.g. the Docker broker: its CPU is not visible as a local pid
    return pid if Path(f"/proc/{pid}").exists() else None


class CpuMeter:
    """CPU seconds per group of processes (workers, fakes, broker) plus this harness."""

    def __init__(self, groups: dict[str, Callable[[], list[int | None]]]) -> None:
        self.groups = groups

    def sample(self) -> dict[str, float | None]:
        result: dict[str, float | None] = {}
        for name, pids in self.groups.items():
            values = [cpu_seconds(pid) for pid in pids()]
            result[name] = None if not values or any(v is None for v in values) else sum(v or 0.0 for v in values)
        result["harness"] = time.process_time()
        return result

    @staticmethod
    def delta(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, end in after.items():
            start = before.get(name)
            out[name] = None if start is None or end is None else round(end - start, 2)
        return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        mem_kb = 0
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem_kb / 1024 / 1024, 1),
            "python": host_platform.python_version(), "kernel": host_platform.release()}


# -- Kafka helpers -------------------------------------------------------------------------------------


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


class GroupLag:
    """Uncommitted records of the worker group on some topics: end offset minus committed offset."""

    def __init__(self, bootstrap: str, group: str, topics: dict[str, int]) -> None:
        self.group = group
        self.partitions = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="pushstream-bench")
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)

    async def __aenter__(self) -> GroupLag:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self) -> dict[str, tuple[int, int]]:
        """Per topic: (uncommitted records, end offsets summed over its partitions)."""
        # Committed first, ends second: each stage writes its output before committing its input, so a
        # zero lag read in this order means every record was consumed, including those produced meanwhile.
        committed = await self.admin.list_consumer_group_offsets(self.group, partitions=self.partitions)
        ends = await self.consumer.end_offsets(self.partitions)
        result: dict[str, tuple[int, int]] = {}
        for tp in self.partitions:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag, end = result.get(tp.topic, (0, 0))
            result[tp.topic] = (lag + max(0, ends[tp] - done), end + ends[tp])
        return result


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(
            [TopicPartition(topic, p) for p in range(partitions)])
        return ends
    finally:
        await consumer.stop()


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


wait_for = wait_until_async


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """Nearest-rank p50/p95/p99 (ms) and max."""
    ordered = sorted(values)

    def rank(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)

    return {"count": len(ordered), "p50_ms": rank(50), "p95_ms": rank(95), "p99_ms": rank(99),
            "max_ms": round(ordered[-1], 1) if ordered else None}


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    settings: Settings
    layout: TopicLayout
    fakes: FakesProcess
    client: FakesClient
    workers: list[RoleProcess]
    population: Population
    meter: CpuMeter
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return kafka_bootstrap(self.settings.kafka.broker)

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def partitions(self, name: str) -> int:
        return self.layout.partitions(name)

    def save(self) -> None:
        """Write the results so far: a run that fails late keeps what it measured."""
        if self.args.json is not None:
            self.args.json.parent.mkdir(parents=True, exist_ok=True)
            self.args.json.write_bytes(orjson.dumps(self.results, option=orjson.OPT_INDENT_2) + b"\n")

    def provider_requests(self) -> int:
        return sum(self.provider_requests_by_platform().values())

    def provider_requests_by_platform(self) -> dict[str, int]:
        """Notification requests per fake; FCM's OAuth token requests (counted with them) are taken out."""
        stats = self.client.stats()
        return {p: int(stats[p]["requests"]) - int(stats[p].get("token_requests", 0)) for p in PLATFORMS}

    async def registration(self) -> None:
        args, population = self.args, self.population
        rng = random.Random(args.seed)
        say(f"==> registering {population.devices:,} devices of {args.users:,} users "
            f"({', '.join(f'{p} {n:,}' for p, n in sorted(population.by_platform.items()))})")
        names = ["pushstream.devices", "pushstream.user-events", "pushstream.token-claims"]
        lag_topics = {self.topic(n): self.partitions(n) for n in names}
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20,
                                    max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
        await producer.start()
        async with GroupLag(self.bootstrap, self.topic("pushstream"), lag_topics) as group:
            cpu_before = self.meter.sample()
            started = time.monotonic()
            try:
                await publish_batched(producer, self.topic("pushstream.devices"), population.values, rng)
            finally:
                await producer.stop()
            published = time.monotonic() - started
            say(f"    published in {published:.1f}s ({population.devices / published:,.0f}/s); waiting for the "
                f"group {self.topic('pushstream')} to commit everything")
            last_print = time.monotonic()
            deadline = started + args.timeout
            while True:
                lags = await group.lag()
                now = time.monotonic()
                if not any(lag for lag, _ in lags.values()):
                    break
                shown = " | ".join(f"{topic.removeprefix(self.topic('pushstream.'))} {lag:,}/{end:,}"
                                   for topic, (lag, end) in lags.items())
                if now > deadline:
                    raise TimeoutError(f"registration not drained after {args.timeout}s: {shown}")
                if now - last_print >= PROGRESS_EVERY:
                    last_print = now
                    say(f"    [{now - started:6.1f}s] uncommitted/written records: {shown}")
                await asyncio.sleep(0.25)  # polling interval of the drain check
            drained = time.monotonic() - started
        cpu = CpuMeter.delta(cpu_before, self.meter.sample())
        rate = population.devices / drained
        say(f"    drained after {drained:.1f}s: {rate:,.0f} devices/s")
        self.results["registration"] = {
            "devices": population.devices, "users": args.users, "by_platform": dict(population.by_platform),
            "publish_seconds": round(published, 2), "drained_seconds": round(drained, 2),
            "devices_per_second": round(rate, 1), "cpu_seconds": cpu,
            # How many (batch) records each stage wrote: small batches downstream cost a flush each.
            "records": {topic.removeprefix(self.topic("pushstream.")): end for topic, (_, end) in lags.items()},
        }

    async def campaign(self) -> None:
        args, population = self.args, self.population
        rng = random.Random(args.seed + 1)
        campaign_id = f"campaign-{self.settings.kafka.topic_prefix.rstrip('.')}"
        status_topic = self.topic("pushstream.status")
        start_offsets = await end_offsets(self.bootstrap, status_topic, self.partitions("pushstream.status"))
        trickle = Trickle(self.bootstrap, self.topic("pushstream.notifications"), population, args.trickle_rate, rng)
        watcher = StatusWatcher(self.bootstrap, status_topic, campaign_id, trickle.sent)
        await watcher.start(start_offsets)
        hops = HopWatcher(self.bootstrap, self.topic("pushstream.intents"),
                          [self.topic(f"pushstream.deliveries.{p}") for p in PLATFORMS], trickle.sent)
        await hops.start()
        await trickle.start()
        stop_watch, stop_trickle = asyncio.Event(), asyncio.Event()
        watch_task = asyncio.create_task(watcher.run(stop_watch))
        hops_task = asyncio.create_task(hops.run(stop_watch))
        trickle_task: asyncio.Task[None] | None = None
        try:
            # Warm-up: the first send per platform opens connections and fetches tokens; keep it out of the
            # figures.
            say("==> warm-up: one transactional notification to a user with every platform")
            warm = await trickle.publish_one(population.tx_users[0])
            await wait_for(lambda: trickle.sent[warm].final(), timeout=args.timeout, what="the warm-up statuses")
            if args.idle_seconds > 0 and args.trickle_rate > 0:
                say(f"==> trickle alone for {args.idle_seconds:g}s ({args.trickle_rate:g}/s): idle latency baseline")
                trickle.phase = "idle"
                stop_idle = asyncio.Event()
                idle_task = asyncio.create_task(trickle.run(stop_idle))
                await asyncio.sleep(args.idle_seconds)  # a measurement window, not a synchronisation
                stop_idle.set()
                await idle_task
                # Idle notifications still in flight would be measured behind the broadcast: finish them first.
                await wait_for(lambda: trickle.done() == len(trickle.sent), timeout=args.timeout,
                               what="the idle trickle's statuses")
            expected = population.devices
            say(f"==> campaign {campaign_id}: marketing broadcast to all {expected:,} devices, "
                f"trickle {args.trickle_rate:g}/s")
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await producer.start()
            try:
                body = {"id": campaign_id, "app_id": APP, "channel": "marketing", "priority": "normal",
                        "target": {"all": True}, "title": "Big sale", "body": "Everything must go"}
                cpu_before = self.meter.sample()
                requests_before = await asyncio.to_thread(self.provider_requests)
                by_platform_before = await asyncio.to_thread(self.provider_requests_by_platform)
                trickle.phase = "campaign"
                started = time.monotonic()
                meta = await producer.send_and_wait(self.topic("pushstream.notifications"), orjson.dumps(body))
                # The trickle starts right behind the broadcast: its first notification is the worst case for
                # the lanes and guarantees a latency sample however short the campaign is.
                trickle_task = asyncio.create_task(trickle.run(stop_trickle))
            finally:
                await producer.stop()
            published_ms = meta.timestamp
            await self._follow_campaign(watcher, trickle, expected, started)
            trickle.phase = "after"
            cpu = CpuMeter.delta(cpu_before, self.meter.sample())
            elapsed = time.monotonic() - started
            requests = await asyncio.to_thread(self.provider_requests) - requests_before
            rss = {w.name: peak_rss_mb(w.pid) for w in self.workers}
            stop_trickle.set()
            await trickle_task
            say(f"    waiting for the statuses of {len(trickle.sent) - trickle.done()} trickle notifications")
            await wait_for(lambda: trickle.done() == len(trickle.sent), timeout=args.timeout,
                           what="the trickle's statuses")
            sender_drain = await self._drain_senders(time.monotonic() - started)
            requests_total = await asyncio.to_thread(self.provider_requests) - requests_before
            by_platform_after = await asyncio.to_thread(self.provider_requests_by_platform)
            # Statuses may still trail the requests (a sender's transaction commits after its sends): a short
            # settle so that the exactly-once check does not miss records the last commit wrote.
            await asyncio.sleep(1.0)
        finally:
            stop_watch.set()
            stop_trickle.set()
            if trickle_task is not None:
                await trickle_task
            await watch_task
            await hops_task
            await watcher.stop()
            await hops.stop()
            await trickle.stop()
        assert watcher.last_ms is not None and watcher.first_ms is not None
        seconds = max(0.001, (watcher.last_ms - published_ms) / 1000)
        deliveries = len(watcher.campaign_devices)
        per_k = {name: (None if value is None else round(value / deliveries * 1000, 3)) for name, value in cpu.items()}
        # The run's own correctness check: every campaign device exactly one final status, and the fakes got one
        # request per final status (campaign + trickle since the campaign started), so nothing was sent twice.
        ids = self.population.device_ids()
        trickle_finals = Counter(st["platform"] for n in trickle.sent.values() if n.phase in ("campaign", "after")
                                 for st in n.statuses if st["status"] in FINAL_STATUSES)
        check = {
            "devices_with_final_status": deliveries,
            "devices_without_final_status": len(ids - watcher.campaign_devices),
            "unknown_devices": len(watcher.campaign_devices - ids),
            "repeated_final_statuses": watcher.campaign_repeated_finals,
            "provider_requests": requests_total, "expected_requests": deliveries + sum(trickle_finals.values()),
            # Per platform: requests the fake counted vs final statuses (campaign + trickle) of that platform.
            "by_platform": {p: {"requests": by_platform_after[p] - by_platform_before[p],
                                "final_statuses": watcher.campaign_final_by_platform[p] + trickle_finals[p]}
                            for p in PLATFORMS},
        }
        check["ok"] = (check["devices_with_final_status"] == expected and not check["devices_without_final_status"]
                       and not check["unknown_devices"] and not check["repeated_final_statuses"]
                       and requests_total == check["expected_requests"])
        del ids
        by_role = {w.name: {"cpu_seconds": cpu.get(w.name), "cpu_seconds_per_1000_deliveries": per_k.get(w.name),
                            "peak_rss_mb": rss.get(w.name)} for w in self.workers}
        self.results["campaign"] = {
            # deliveries = devices with a final status (any of FINAL_STATUSES); delivered = accepted by the fake.
            "id": campaign_id, "expected": expected, "deliveries": deliveries,
            "delivered": watcher.campaign_by_status.get("delivered", 0),
            "status_records": watcher.campaign_records, "by_status": dict(watcher.campaign_by_status),
            "seconds": round(seconds, 2), "deliveries_per_second": round(deliveries / seconds, 1),
            "first_status_seconds": round((watcher.first_ms - published_ms) / 1000, 2),
            "provider_requests": requests, "status_records_read": watcher.records,
            "wall_seconds": round(elapsed, 2),
            # `workers` = every pushstream process together (router + senders, or the all-in-one workers);
            # then one key per process (router, sender-transactional, sender-bulk-N / workerN).
            "cpu_seconds": cpu, "cpu_seconds_per_1000_deliveries": per_k,
            "peak_rss_mb": rss, "by_role": by_role, "sender_groups_drained": sender_drain,
            "check": check,
        }
        self.results["transactional"] = self._latency(trickle)

    async def _drain_senders(self, since_campaign: float) -> dict[str, Any]:
        """Wait until every sender group (`<prefix>pushstream-sender-<lane>-<platform>`) has committed all of its
        delivery and retry topics: nothing of the campaign is left in flight."""
        started = time.monotonic()
        groups: dict[str, dict[str, int]] = {}
        for lane in LANES:
            for platform in PLATFORMS:
                names = [delivery_topic(platform, lane),
                         *(retry_topic(platform, lane, band) for band in RETRY_BANDS)]
                groups[f"{self.topic('pushstream')}-sender-{lane}-{platform}"] = {
                    self.topic(n): self.partitions(n) for n in names}
        left: dict[str, int] = {}
        for group_id, topics in groups.items():
            async with GroupLag(self.bootstrap, group_id, topics) as group:
                while True:
                    lag = sum(n for n, _ in (await group.lag()).values())
                    if not lag:
                        break
                    if time.monotonic() - started > self.args.timeout:
                        left[group_id] = lag
                        break
                    await asyncio.sleep(0.25)  # polling interval of the drain check
        waited = time.monotonic() - started
        say(f"    sender groups committed everything {since_campaign + waited:.1f}s after the campaign was published"
            + (f"; still uncommitted: {left}" if left else ""))
        return {"seconds_after_campaign_published": round(since_campaign + waited, 2), "uncommitted": left}

    async def _follow_campaign(self, watcher: StatusWatcher, trickle: Trickle, expected: int, started: float) -> None:
        deadline = started + self.args.timeout
        last_t, last_n = started, 0
        last_cpu = self.meter.sample()
        while len(watcher.campaign_devices) < expected:
            await asyncio.sleep(0.05)  # completion polling interval; the watcher task does the reading
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"campaign incomplete after {self.args.timeout}s: "
                                   f"{len(watcher.campaign_devices):,} of {expected:,} devices with final statuses "
                                   f"({dict(watcher.campaign_by_status)})")
            if now - last_t < PROGRESS_EVERY:
                continue
            cpu = self.meter.sample()
            share = CpuMeter.delta(last_cpu, cpu)
            busy = " ".join(f"{name} {100 * v / (now - last_t):.0f}%" for name, v in share.items() if v is not None)
            n = len(watcher.campaign_devices)
            say(f"    [{now - started:6.1f}s] {n:>10,}/{expected:,} deliveries {(n - last_n) / (now - last_t):>9,.0f}/s"
                f" | trickle {len(trickle.sent)} sent {trickle.done()} done | cpu {busy}")
            last_t, last_n, last_cpu = now, n, cpu
        say(f"    all {expected:,} campaign statuses written")

    @staticmethod
    def _latency(trickle: Trickle) -> dict[str, Any]:
        phases: dict[str, list[float]] = {"idle": [], "campaign": []}
        hops: dict[str, dict[str, list[float]]] = {phase: {"ingest": [], "route": [], "send": []}
                                                   for phase in phases}
        counts: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        for notification in trickle.sent.values():
            counts[notification.phase] += 1
            if notification.phase not in phases:
                continue
            for status in notification.statuses:
                outcomes[status["status"]] += 1
                if status["status"] == "delivered":
                    phases[notification.phase].append((epoch(status["at"]) - notification.published) * 1000)
            first = min((epoch(s["at"]) for s in notification.statuses if s["status"] == "delivered"), default=None)
            if first is not None and notification.intent_at is not None and notification.delivery_at is not None:
                steps = hops[notification.phase]
                steps["ingest"].append((notification.intent_at - notification.published) * 1000)
                steps["route"].append((notification.delivery_at - notification.intent_at) * 1000)
                steps["send"].append((first - notification.delivery_at) * 1000)
        return {
            "published": dict(counts),
            # Latency counts delivered devices only; anything else shows here.
            "statuses": dict(outcomes),
            "idle": percentiles(phases["idle"]),
            "during_campaign": percentiles(phases["campaign"]),
            # publish→intent (ingest + planner), intent→delivery batch (router), batch→first answer (sender)
            "hops": {phase: {hop: percentiles(values) for hop, values in steps.items()}
                     for phase, steps in hops.items()},
            "idle_latencies_ms": [round(v, 1) for v in phases["idle"]],
            "during_campaign_latencies_ms": [round(v, 1) for v in phases["campaign"]],
        }

    def recovery(self, scenarios: list[str]) -> None:
        results: dict[str, Any] = {}
        for how in scenarios:
            say(f"==> recovery: {self.workers[0].name} {how}, restart, until /readyz is 200")
            results[how] = restart_worker(self.workers[0], how, timeout=self.args.timeout)
            self.results["recovery"] = results
            self.save()
            wait_all_ready(self.workers, timeout=self.args.timeout)
            say("    " + ", ".join(f"{k} {v}" for k, v in results[how].items()))
        self.results["recovery"] = results


def restart_worker(worker: RoleProcess, how: str, *, timeout: float) -> dict[str, Any]:
    """Stop worker 1 the given way, start it on the same data dir (wiped for `wipe`), time /readyz."""
    stopping = time.monotonic()
    if how == "sigkill":
        worker.kill()
    else:
        worker.stop(timeout=60)
    stop_seconds = time.monotonic() - stopping
    exit_code = worker.process.returncode if worker.process else None
    if how == "wipe":
        shutil.rmtree(worker.datadir, ignore_errors=True)
    started = time.monotonic()
    worker.start()
    seen: dict[str, float] = {}

    def ready() -> bool:
        if not worker.alive():
            raise RuntimeError(f"worker exited during recovery:\n{worker.log_tail()}")
        try:
            response = httpx.get(f"{worker.url}/readyz", timeout=2)
        except httpx.HTTPError:
            return False
        now = time.monotonic() - started
        seen.setdefault("web_up_seconds", now)
        if response.json().get("assigned"):
            seen.setdefault("assigned_seconds", now)
        return response.status_code == 200

    try:
        wait_until(ready, timeout=timeout, interval=0.1, what=f"worker on :{worker.web_port} /readyz after {how}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{worker.log_tail()}") from None
    return {"ready_seconds": round(time.monotonic() - started, 2),
            **{k: round(v, 2) for k, v in seen.items()},
            "stop_seconds": round(stop_seconds, 2), "exit_code": exit_code}


def wait_all_ready(workers: list[RoleProcess], *, timeout: float) -> None:
    # A worker that turned ready can lose readiness when the next one joins (rebalance): check all at once.
    wait_until(lambda: all(w.ready() for w in workers), timeout=timeout, interval=0.2, what="every worker's /readyz")


def write_topics_file(path: Path, partitions: int | None) -> Path:
    """A copy of the repo's topics.yaml, with every topic at ``partitions`` partitions if given.

    Always a copy: a worker restarted in the recovery phase must see the layout its topics were made from,
    even if the checkout's topics.yaml changes meanwhile.
    """
    source = ROOT / "topics.yaml"
    if partitions is None:
        shutil.copyfile(source, path)
        return path
    layout = yaml.safe_load(source.read_text())
    layout["user_partitions"] = partitions
    for spec in layout["topics"].values():
        if "partitions" in spec:
            spec["partitions"] = partitions
    path.write_text(yaml.safe_dump(layout, sort_keys=False))
    return path


def code_version() -> dict[str, Any]:
    """Which code was measured: the checkout's commit and whether tracked files differ from it."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return {"commit": commit or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None}


async def delete_topics(settings: Settings, layout: TopicLayout) -> None:
    """Every topic of the run: all carry its (never empty) prefix, Faust's own (leader election, repartitions)
    too, so the layout's topics are among them."""
    assert settings.kafka.topic_prefix, "a benchmark run always has its own topic prefix"
    await kafkatools.delete_topics_with_prefix(kafka_bootstrap(settings.kafka.broker), settings.kafka.topic_prefix)


def summary(results: dict[str, Any]) -> str:
    reg, camp, tx = results["registration"], results["campaign"], results["transactional"]
    cfg = results["config"]
    lines = [
        "",
        f"pushstream e2e benchmark: {cfg['devices']:,} devices, {cfg['deployment']} ({', '.join(cfg['processes'])}), "
        f"{cfg['partitions']} partitions, trickle {cfg['trickle_rate']:g}/s, provider latency "
        f"{cfg['provider_latency']:g}s",
        f"  registration ingest   {reg['devices_per_second']:>12,.0f} devices/s  "
        f"({reg['devices']:,} in {reg['drained_seconds']}s; publish alone {reg['publish_seconds']}s)",
        f"  campaign              {camp['deliveries_per_second']:>12,.0f} deliveries/s  "
        f"({camp['deliveries']:,}/{camp['expected']:,} in {camp['seconds']}s; first status after "
        f"{camp['first_status_seconds']}s)",
        *([f"  !! not all delivered: {camp['by_status']} (status records of the campaign, retries included)"]
          if camp["delivered"] != camp["expected"] else []),
        f"  tx latency idle       p50 {tx['idle']['p50_ms']} ms  p95 {tx['idle']['p95_ms']} ms  "
        f"p99 {tx['idle']['p99_ms']} ms  (n={tx['idle']['count']})",
        f"  tx latency campaign   p50 {tx['during_campaign']['p50_ms']} ms  p95 {tx['during_campaign']['p95_ms']} ms"
        f"  p99 {tx['during_campaign']['p99_ms']} ms  max {tx['during_campaign']['max_ms']} ms "
        f"(n={tx['during_campaign']['count']})",
        "  tx hops campaign      " + ", ".join(
            f"{hop} p50 {v['p50_ms']} p99 {v['p99_ms']} ms" for hop, v in tx["hops"]["campaign"].items()),
        "  cpu s / 1000 deliveries " + ", ".join(
            f"{k} {v}" for k, v in camp["cpu_seconds_per_1000_deliveries"].items()),
        "  peak RSS MB           " + ", ".join(f"{k} {v}" for k, v in camp["peak_rss_mb"].items()),
        f"  check                 {'OK' if camp['check']['ok'] else '!! FAILED'}: "
        f"{camp['check']['devices_with_final_status']:,} devices with a final status, "
        f"{camp['check']['devices_without_final_status']} without, {camp['check']['repeated_final_statuses']} "
        f"repeated finals, {camp['check']['unknown_devices']} unknown; provider requests "
        f"{camp['check']['provider_requests']:,} (expected {camp['check']['expected_requests']:,})",
    ]
    for how, rec in results.get("recovery", {}).items():
        lines.append(f"  recovery {how:<12} ready after {rec['ready_seconds']}s "
                     f"(assigned {rec.get('assigned_seconds')}s, stop {rec['stop_seconds']}s)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM's default ends the process on the spot and would orphan the workers and fakes: exit through
    # the finally below instead.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    scenarios = [] if args.recovery.strip() == "none" else [s.strip() for s in args.recovery.split(",") if s.strip()]
    unknown = set(scenarios) - {"sigkill", "sigterm", "wipe"}
    if unknown or args.users < 1 or args.devices_per_user < 1 or args.workers < 1 or args.bulk_senders < 1:
        build_parser().error(f"bad options (unknown recovery scenario {sorted(unknown)})" if unknown
                             else "--users, --devices-per-user, --workers and --bulk-senders must be at least 1")
    if args.deployment == "split" and args.workers != 1:
        build_parser().error("--workers is for --deployment all-in-one (split: --bulk-senders)")
    workdir: Path = args.workdir.resolve()
    prefix = f"bench{int(time.time())}."
    run_dir = workdir / prefix.rstrip(".")
    run_dir.mkdir(parents=True, exist_ok=True)

    # Fakes per run (their setup dir holds the ready file and the log): concurrent runs must not share one.
    say(f"==> fakes in benchmark mode (setup in {run_dir / 'fakes'})")
    fakes = FakesProcess(run_dir / "fakes", benchmark=True)
    client = fakes.start()
    workers: list[RoleProcess] = []
    settings: Settings | None = None
    layout: TopicLayout | None = None
    try:
        if args.provider_latency > 0:
            client.set_latency(args.provider_latency)
        setup = client.setup()
        topics_path = write_topics_file(run_dir / "topics.yaml", args.partitions)
        config = {
            "kafka": {"broker": f"kafka://{args.broker}", "topic_prefix": prefix, "topics_file": str(topics_path)},
            "apps": {APP: dev_app_config(setup, [API_KEY])},
        }
        config_path = run_dir / "pushstream.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        settings = load_settings(config_path)
        layout = load_layout(topics_path)
        created, drift = asyncio.run(apply_topics(settings, layout))
        if drift:
            raise RuntimeError(f"topic drift on a fresh prefix: {drift}")
        extra_env = {"BROKER_SESSION_TIMEOUT": str(args.session_timeout)} if args.session_timeout else None
        workers.extend(make_processes(args, config_path, run_dir, extra_env))
        say(f"==> {len(created)} topics with prefix {prefix!r} ({layout.user_partitions} user partitions); "
            f"{args.deployment}: starting {', '.join(w.name for w in workers)}; logs in {run_dir}")
        started = time.monotonic()
        for worker in workers:
            worker.start()
        wait_all_ready(workers, timeout=args.timeout)
        say(f"    ready after {time.monotonic() - started:.1f}s: "
            + ", ".join(f"{w.name} pid {w.pid} {w.url}" for w in workers))

        population = build_population(args.users, args.devices_per_user, args.mix, min(args.tx_users, args.users),
                                      setup, random.Random(args.seed))
        groups: dict[str, Callable[[], list[int | None]]] = {"workers": lambda: [w.pid for w in workers]}
        for w in workers:
            groups[w.name] = lambda w=w: [w.pid]  # type: ignore[misc]
        meter = CpuMeter({
            **groups,
            "fakes": lambda: [fakes.endpoints.pid if fakes.endpoints else None],
            "broker": lambda: [broker_pid(args.broker)],
        })
        bench = Bench(args=args, settings=settings, layout=layout, fakes=fakes, client=client, workers=workers,
                      population=population, meter=meter)
        bench.results["config"] = {
            "users": args.users, "devices_per_user": args.devices_per_user, "devices": population.devices,
            "tx_users": len(population.tx_users), "mix": args.mix, "deployment": args.deployment,
            "workers": args.workers if args.deployment == "all-in-one" else None,
            "bulk_senders": args.bulk_senders if args.deployment == "split" else None,
            "processes": [w.name for w in workers],
            "partitions": layout.user_partitions, "trickle_rate": args.trickle_rate,
            "provider_latency": args.provider_latency, "session_timeout": args.session_timeout,
            "topic_prefix": prefix, "broker_pid_visible": broker_pid(args.broker) is not None,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "code": code_version(),
        }
        bench.results["machine"] = machine()

        async def traffic() -> None:
            await bench.registration()
            bench.save()
            await bench.campaign()
            bench.save()

        try:
            asyncio.run(traffic())
            bench.recovery(scenarios)
        except BaseException as exc:
            bench.results["error"] = repr(exc)
            bench.save()
            raise
        results = bench.results
        bench.save()
        say(summary(results))
        if args.json is not None:
            say(f"\nresults written to {args.json}")
        compact = {k: v for k, v in results.items()}
        compact["transactional"] = {k: v for k, v in results["transactional"].items()
                                    if not k.endswith("_latencies_ms")}
        say(orjson.dumps(compact, option=orjson.OPT_INDENT_2).decode())
        return 0
    finally:
        if args.keep:
            say(f"(--keep: workers {[w.process.pid for w in workers if w.process]}, fakes pid "
                f"{fakes.endpoints.pid if fakes.endpoints else '?'}, topics {prefix}* and {run_dir} are left)")
        else:
            for worker in workers:
                worker.stop()
            fakes.stop()
            if settings is not None and layout is not None:
                try:
                    asyncio.run(delete_topics(settings, layout))
                except Exception as exc:  # cleanup must not hide the run's own error
                    say(f"warning: could not delete the {prefix}* topics: {exc!r}")
            for worker in workers:
                shutil.rmtree(worker.datadir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
