"""The three phases of a run (registration, campaign with the trickle, recovery), measured."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from benchmarks.e2e.meters import CpuMeter, peak_rss_mb
from benchmarks.e2e.options import (
    APP,
    LANES,
    PLATFORMS,
    PROGRESS_EVERY,
)
from benchmarks.e2e.population import Population
from benchmarks.e2e.processes import RoleProcess, restart_worker, wait_all_ready
from benchmarks.e2e.report import percentiles
from benchmarks.e2e.watch import HopWatcher, StatusWatcher, Trickle, epoch, publish_batched
from pushstream.agents.senders import delivery_topic, retry_topic
from pushstream.config import Settings
from pushstream.kafkatools import KafkaSession, lag_by_topic, say
from pushstream.models.status import FINAL_STATUSES
from pushstream.rules.retry import RETRY_BANDS
from pushstream.testing.fakes.control import FakesClient, FakesProcess
from pushstream.testing.stack import wait_until_async
from pushstream.topology import TopicLayout, kafka_bootstrap


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
        lag_topics = {self.topic(n): range(self.partitions(n)) for n in names}
        group = self.topic("pushstream")
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20,
                                    max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
        await producer.start()
        # read_uncommitted: records of a transaction still open count as not processed yet.
        async with KafkaSession(self.bootstrap, client_id="pushstream-bench",
                                isolation_level="read_uncommitted") as kafka:

            async def written() -> dict[str, int]:
                """End offsets summed per topic: the records (batches) each stage wrote."""
                return {topic: sum((await kafka.end_offsets(topic, parts)).values())
                        for topic, parts in lag_topics.items()}

            def shown(lags: dict[str, int], ends: dict[str, int]) -> str:
                return " | ".join(f"{topic.removeprefix(self.topic('pushstream.'))} {lags.get(topic, 0):,}/{end:,}"
                                  for topic, end in ends.items())

            cpu_before = self.meter.sample()
            started = time.monotonic()
            try:
                await publish_batched(producer, self.topic("pushstream.devices"), population.values, rng)
            finally:
                await producer.stop()
            published = time.monotonic() - started
            say(f"    published in {published:.1f}s ({population.devices / published:,.0f}/s); waiting for the "
                f"group {group} to commit everything")
            last_print = time.monotonic()
            deadline = started + args.timeout
            while True:
                lags = lag_by_topic(await kafka.group_lag(group, lag_topics))
                now = time.monotonic()
                if not any(lags.values()):
                    break
                if now > deadline:
                    raise TimeoutError(f"registration not drained after {args.timeout}s: "
                                       f"{shown(lags, await written())}")
                if now - last_print >= PROGRESS_EVERY:
                    last_print = now
                    say(f"    [{now - started:6.1f}s] uncommitted/written records: {shown(lags, await written())}")
                await asyncio.sleep(0.25)  # polling interval of the drain check
            drained = time.monotonic() - started
            ends = await written()
        cpu = CpuMeter.delta(cpu_before, self.meter.sample())
        rate = population.devices / drained
        say(f"    drained after {drained:.1f}s: {rate:,.0f} devices/s")
        self.results["registration"] = {
            "devices": population.devices, "users": args.users, "by_platform": dict(population.by_platform),
            "publish_seconds": round(published, 2), "drained_seconds": round(drained, 2),
            "devices_per_second": round(rate, 1), "cpu_seconds": cpu,
            # How many (batch) records each stage wrote: small batches downstream cost a flush each.
            "records": {topic.removeprefix(self.topic("pushstream.")): end for topic, end in ends.items()},
        }

    async def campaign(self) -> None:
        args, population = self.args, self.population
        rng = random.Random(args.seed + 1)
        campaign_id = f"campaign-{self.settings.kafka.topic_prefix.rstrip('.')}"
        status_topic = self.topic("pushstream.status")
        async with KafkaSession(self.bootstrap, client_id="pushstream-bench",
                                isolation_level="read_uncommitted") as kafka:
            ends = await kafka.end_offsets(status_topic, range(self.partitions("pushstream.status")))
        start_offsets = {TopicPartition(status_topic, p): offset for p, offset in ends.items()}
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
            await wait_until_async(lambda: trickle.sent[warm].final(), timeout=args.timeout,
                                   what="the warm-up statuses")
            if args.idle_seconds > 0 and args.trickle_rate > 0:
                say(f"==> trickle alone for {args.idle_seconds:g}s ({args.trickle_rate:g}/s): idle latency baseline")
                trickle.phase = "idle"
                stop_idle = asyncio.Event()
                idle_task = asyncio.create_task(trickle.run(stop_idle))
                await asyncio.sleep(args.idle_seconds)  # a measurement window, not a synchronisation
                stop_idle.set()
                await idle_task
                # Idle notifications still in flight would be measured behind the broadcast: finish them first.
                await wait_until_async(lambda: trickle.done() == len(trickle.sent), timeout=args.timeout,
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
            await wait_until_async(lambda: trickle.done() == len(trickle.sent), timeout=args.timeout,
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
        groups: dict[str, dict[str, range]] = {}
        for lane in LANES:
            for platform in PLATFORMS:
                names = [delivery_topic(platform, lane),
                         *(retry_topic(platform, lane, band) for band in RETRY_BANDS)]
                groups[f"{self.topic('pushstream')}-sender-{lane}-{platform}"] = {
                    self.topic(n): range(self.partitions(n)) for n in names}
        left: dict[str, int] = {}
        async with KafkaSession(self.bootstrap, client_id="pushstream-bench",
                                isolation_level="read_uncommitted") as kafka:
            for group_id, topics in groups.items():
                while True:
                    lag = sum((await kafka.group_lag(group_id, topics)).values())
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

