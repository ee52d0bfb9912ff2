"""Real parts for integration tests: a deployment (config + topics on the local broker), faust worker
processes started and killed like in production, and Kafka producers/consumers. Nothing here is a mock."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from pushstream.kafkatools import KafkaSession
from pushstream.testing.fakes import webpush_subscription
from pushstream.testing.fakes.control import FakesClient, FakesProcess
from pushstream.testing.stack import (
    WorkerProcess,
    dev_app_config,
    free_port,
    spawn,
    wait_until,
    write_topics_file,
)

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("PUSHSTREAM_TEST_BROKER", "127.0.0.1:9092")
BIN = Path(sys.executable).parent
DEMO_KEY = "key-demo"
# Topic prefixes of the deployments this process made: removed at the end of the session (and only those, so
# concurrent runs on the same broker keep theirs).
CREATED_PREFIXES: list[str] = []
OTHER_KEY = "key-other"


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy; fail with ``what`` at the deadline. Never a bare sleep."""
    try:
        return wait_until(condition, timeout=timeout, interval=interval, what=what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


@dataclass
class Deployment:
    """One isolated pushstream deployment on the shared broker: its own topic prefix, config and topics."""

    root: Path
    prefix: str
    config_path: Path
    partitions: int
    apps: dict[str, Any]
    broker: str = BROKER  # bootstrap servers, host:port[,host:port…]

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHSTREAM_")}
        env["PUSHSTREAM_CONFIG"] = str(self.config_path)
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "pushstream"), *args], env=self.env(), cwd=self.root, text=True,
                              capture_output=True, check=check, timeout=120)


def make_deployment(root: Path, *, partitions: int = 4, apps: dict[str, Any] | None = None,
                    apply: bool = True, broker: str = BROKER, replication_factor: int = 1) -> Deployment:
    """Write pushstream.yaml and a topics.yaml with ``partitions`` everywhere, then `pushstream topics apply`.
    ``broker``: another broker or cluster than the shared one (host:port, comma-separated)."""
    root.mkdir(parents=True, exist_ok=True)
    write_topics_file(root / "topics.yaml", ROOT / "topics.yaml", partitions, replication_factor)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    CREATED_PREFIXES.append(prefix)
    apps = apps if apps is not None else {"demo": {"api_keys": [DEMO_KEY]}, "other": {"api_keys": [OTHER_KEY]}}
    config = {
        "kafka": {"broker": ";".join(f"kafka://{b}" for b in broker.split(",")), "topic_prefix": prefix,
                  "topics_file": "topics.yaml"},
        "web": {"port": 6066},
        "apps": apps,
        "pipeline": {"ingest_within_seconds": 0.02},
    }
    config_path = root / "pushstream.yaml"
    config_path.write_text(yaml.safe_dump(config))
    deployment = Deployment(root=root, prefix=prefix, config_path=config_path, partitions=partitions, apps=apps,
                            broker=broker)
    if apply:
        deployment.cli("topics", "apply")
    return deployment


class Worker(WorkerProcess):
    """A real `faust worker` process of a deployment, named for its data dir and log."""

    def __init__(self, deployment: Deployment, name: str, web_port: int | None = None, role: str | None = None) -> None:
        """``role="router"``: the Faust app without the sender tier (tests that stop at the delivery topics)."""
        super().__init__(config_path=deployment.config_path, datadir=deployment.root / f"data-{name}",
                         web_port=web_port or free_port(), log_path=deployment.root / f"{name}.log",
                         extra_env={"PUSHSTREAM_ROLE": role} if role else None)
        self.deployment = deployment
        self.name = name

    def get(self, path: str, api_key: str | None = DEMO_KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def post(self, path: str, body: Any, api_key: str | None = DEMO_KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.post(f"{self.url}{path}", headers=headers, content=orjson.dumps(body), timeout=10)


class Kafka:
    """Produce like an external client (random partitions) and read topics from the beginning."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Kafka:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.deployment.broker, acks="all", linger_ms=5)
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def publish(self, topic: str, values: Iterable[Any], *, key: Callable[[Any], str | None] | None = None,
                      seed: int = 7) -> int:
        """Publish JSON values (bytes as they are) to random partitions, like a producer with its own partitioner."""
        assert self.producer is not None
        name = self.deployment.topic(topic)
        partitions = sorted(await self.producer.partitions_for(name))
        rng = random.Random(seed)
        futures = []
        for value in values:
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            raw_key = key(value) if key else None
            futures.append(await self.producer.send(
                name, raw, key=raw_key.encode() if raw_key else None, partition=rng.choice(partitions)))
        await asyncio.gather(*futures)
        return len(futures)

    async def lag(self, topics: list[str], group: str | None = None) -> int:
        """Records the workers' consumer group (default the router's) has not committed yet on these topics."""
        names = [self.deployment.topic(t) for t in topics]
        # read_uncommitted: records of a transaction still open count as not processed yet.
        async with KafkaSession(self.deployment.broker, isolation_level="read_uncommitted") as session:
            lag = await session.group_lag(group or f"{self.deployment.prefix}pushstream", names)
        return sum(lag.values())

    async def wait_drained(self, topics: list[str], timeout: float = 60, group: str | None = None) -> None:
        """Poll until every record on ``topics`` is processed and committed by the workers."""
        deadline = time.monotonic() + timeout
        while (remaining := await self.lag(topics, group)) > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{remaining} records on {topics} still unprocessed after {timeout}s")
            await asyncio.sleep(0.2)  # polling interval, not synchronisation

    async def read(self, topic: str, *, until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
                   timeout: float = 60, settle: float = 0.0) -> list[ConsumerRecord[bytes, bytes]]:
        """All records of a topic from the start, once ``until(records)`` holds (then ``settle`` more seconds
        of reading, to catch records that should NOT be there)."""
        # read_committed, as a consumer of the status stream must: a sender that crashes mid-transaction leaves
        # records that are aborted and written again by the next owner.
        consumer = AIOKafkaConsumer(self.deployment.topic(topic), bootstrap_servers=self.deployment.broker,
                                    group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    isolation_level="read_committed")
        await consumer.start()
        records: list[ConsumerRecord[bytes, bytes]] = []
        try:
            deadline = time.monotonic() + timeout
            satisfied_at: float | None = None
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    records.extend(messages)
                now = time.monotonic()
                if satisfied_at is None and until(records):
                    satisfied_at = now
                if satisfied_at is not None and now - satisfied_at >= settle:
                    return records
                if now > deadline:
                    raise AssertionError(f"timed out reading {topic}: {len(records)} records")
        finally:
            await consumer.stop()

    async def read_json(self, topic: str, *, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 60,
                        settle: float = 0.0) -> list[dict[str, Any]]:
        records = await self.read(topic, until=lambda rs: until([orjson.loads(r.value) for r in rs]),
                                  timeout=timeout, settle=settle)
        return [orjson.loads(r.value) for r in records]


@dataclass
class Stack:
    """A deployment wired to running fake providers."""

    deployment: Deployment
    fakes: FakesClient
    setup: dict[str, Any]

    def subscription(self, sid: str) -> dict[str, Any]:
        return webpush_subscription(self.setup["webpush_origin"], bytes.fromhex(self.setup["webpush_seed"]), sid)


def make_stack(root: Path, fakes: FakesProcess, *, partitions: int = 4, broker: str = BROKER,
               replication_factor: int = 1) -> Stack:
    """A deployment whose `demo` app sends to the running fakes."""
    client = fakes.client
    assert client is not None
    setup = client.setup()
    apps = {"demo": dev_app_config(setup, [DEMO_KEY]), "other": {"api_keys": [OTHER_KEY]}}
    deployment = make_deployment(root, partitions=partitions, apps=apps, broker=broker,
                                 replication_factor=replication_factor)
    return Stack(deployment=deployment, fakes=client, setup=setup)


class RoleProcess:
    """`pushstream worker [--role …]` as a real process of a deployment (router, sender or the supervisor)."""

    def __init__(self, deployment: Deployment, name: str, args: list[str], web_port: int,
                 worker_id: str | None = None) -> None:
        self.deployment, self.name, self.args, self.web_port = deployment, name, args, web_port
        self.worker_id = worker_id or name
        self.log_path = deployment.root / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> RoleProcess:
        self.process = spawn([str(BIN / "pushstream"), "worker", "--no-apply", *self.args],
                             config_path=self.deployment.config_path, worker_id=self.worker_id,
                             log_path=self.log_path)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def ready(self, port: int | None = None) -> bool:
        if not self.alive():
            raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port or self.web_port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 120, port: int | None = None) -> RoleProcess:
        wait_for(lambda: self.ready(port), timeout=timeout, interval=0.2, what=f"{self.name} ready")
        return self

    def kill(self) -> None:
        if self.process is not None and self.alive():
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        assert self.process is not None
        if self.alive():
            self.process.terminate()
        return self.process.wait(timeout=timeout)

    def get(self, path: str, api_key: str | None = DEMO_KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)
