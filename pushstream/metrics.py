"""Prometheus metrics: one registry per process, served at GET /metrics.

Every series and its labels is listed in docs/architecture.md (Metrics). Labels are bounded: app ids come from
the config, platforms, lanes, statuses and reasons from fixed vocabularies and the providers' classification
tables; never a user, device, token or notification id.

Hot-path rule: the sender updates these once per settled poll (`observe_poll`) with counts, through labelled
children cached in dicts; provider latencies are bucketed by the clients themselves (`SendCounters`) and read,
like the provider counters, in-flight requests and consumer lag, only when /metrics is scraped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

records_in = Counter(
    "pushstream_records_in_total", "Records read from input topics", ["topic"], registry=REGISTRY
)
dead_letters = Counter(
    "pushstream_dead_letters_total",
    "Records written to the dead-letter topic (counted where they are written: equals the DLQ topic's count)",
    ["source", "reason"], registry=REGISTRY,
)
statuses = Counter(
    "pushstream_status_total", "Per-device outcomes written to the status topic", ["platform", "status", "reason"],
    registry=REGISTRY,
)
deliveries_planned = Counter(
    "pushstream_deliveries_planned_total", "Devices routed to a delivery topic", ["platform", "lane"],
    registry=REGISTRY,
)
sends_skipped = Counter(
    "pushstream_sends_skipped_total", "Devices of delivery batches skipped because their outcome was already committed",
    ["lane"], registry=REGISTRY,
)
batch_seconds = Histogram(
    "pushstream_batch_seconds", "Time to process one batch, per agent", ["agent"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
deliveries = Counter(
    "pushstream_deliveries_total", "Devices settled by a sender, by outcome (the status written)",
    ["app_id", "platform", "lane", "status"], registry=REGISTRY,
)
hook_errors = Counter(
    "pushstream_hook_errors_total",
    "Per-app hook calls that raised, answered nonsense or exceeded their time budget (pre_send: per device, "
    "dead-lettered hook_error; post_send: per batch of outcomes, or dropped when its queue was full)",
    ["app_id", "hook"], registry=REGISTRY,
)
retries = Counter(
    "pushstream_retries_total", "Devices put on a retry topic, by the reason of the failed attempt",
    ["platform", "lane", "reason"], registry=REGISTRY,
)

# Publish → provider answer, per device: the SLO of the transactional lane (OTP p99 < 500 ms).
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
# Statuses that carry the provider's final answer for the device: the ones the delivery latency counts.
ANSWERED = frozenset({"delivered", "invalid_token", "failed"})


class CountHistogram:
    """A histogram that takes ``observe(value, count)``: one call per batch for all its devices.

    prometheus-client's Histogram takes one observation per call (and a lock each); a settled batch of 500
    devices with one latency would pay 500 of them.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = list(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._series: dict[tuple[str, ...], list[float]] = {}  # labels → [count per bucket …, +Inf, sum]

    def observe(self, labels: tuple[str, ...], value: float, count: int = 1) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, value)] += count
        series[-1] += value * count

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, series in list(self._series.items()):
            family.add_metric(list(labels), cumulative(self.bounds, series[:-1]), series[-1])
        yield family


def cumulative(bounds: Sequence[float], counts: Sequence[float]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last one +Inf) → Prometheus's cumulative (le, count) pairs."""
    out, running = [], 0.0
    for bound, n in zip([*map(str, bounds), "+Inf"], counts, strict=True):
        running += n
        out.append((bound, running))
    return out


delivery_latency = CountHistogram(
    "pushstream_delivery_latency_seconds",
    "Time from the notification's publish (or send_at) to the provider's final answer, per device",
    ["platform", "lane"], LATENCY_BUCKETS,
)
REGISTRY.register(delivery_latency)  # type: ignore[arg-type]  # a collector: collect() is all it needs

_status_children: dict[tuple[str, str, str], Any] = {}
_delivery_children: dict[tuple[str, str, str, str], Any] = {}
_retry_children: dict[tuple[str, str, str], Any] = {}
_dead_letter_children: dict[tuple[str, str], Any] = {}


def _child(cache: dict[Any, Any], metric: Any, key: tuple[str, ...]) -> Any:
    child = cache.get(key)
    if child is None:
        child = cache[key] = metric.labels(*key)
    return child


def count_statuses(tally: Tally[tuple[str, str, str]]) -> None:
    """Add a batch's (platform, status, reason) counts: one label lookup per distinct outcome, not per device."""
    for key, n in tally.items():
        _child(_status_children, statuses, key).inc(n)


def count_dead_letters(tally: Mapping[tuple[str, str], int]) -> None:
    """Add (source, reason) counts of dead letters that were just written (flushed or committed)."""
    for key, n in tally.items():
        _child(_dead_letter_children, dead_letters, key).inc(n)


def observe_poll(lane: str, settled: Iterable[tuple[Any, Any]], *, answered_at: float,
                 internal_errors: int = 0) -> None:
    """Everything a sender's committed poll adds, in one call: ``settled`` holds (DeliveryBatch, Settlement)
    pairs; ``internal_errors`` counts the records dead-lettered because they could not be decoded or settled.
    Call it only after the poll's transaction committed, so the counts match what the topics hold."""
    dlq: Tally[tuple[str, str]] = Tally()
    for batch, outcome in settled:
        platform = batch.platform
        count_statuses(outcome.tally)
        answered = 0
        for (_, status, reason), n in outcome.tally.items():
            _child(_delivery_children, deliveries, (batch.app_id, platform, lane, status)).inc(n)
            if status in ANSWERED:
                answered += n
            elif status == "retrying":
                _child(_retry_children, retries, (platform, lane, reason)).inc(n)
        published = getattr(batch, "received_at", None)
        if answered and published:
            delivery_latency.observe((platform, lane), max(0.0, answered_at - published), answered)
        for _, reason, _, _ in outcome.dead_letters:
            dlq[(f"sender-{platform}", reason)] += 1
    if internal_errors:
        dlq[(f"sender-{lane}", "internal_error")] += internal_errors
    if dlq:
        count_dead_letters(dlq)


# Scrape-time collectors --------------------------------------------------------------------------------------------

class SenderCollector:
    """What the sender services' provider clients keep (`SendCounters`), read at scrape time: requests, resends,
    reconnects, auth refreshes, verdicts by action and reason, request latency, in-flight requests; and each
    service's sent-memory size."""

    def __init__(self) -> None:
        self.services: list[Any] = []

    def collect(self) -> Iterator[Metric]:
        app_labels = ["app_id", "platform", "lane"]
        requests = CounterMetricFamily("pushstream_provider_requests", "Requests written to a provider (resends "
                                       "included)", labels=app_labels)
        resends = CounterMetricFamily("pushstream_provider_resends", "In-batch resends (unprocessed streams, "
                                      "reconnects, re-auth)", labels=app_labels)
        reconnects = CounterMetricFamily("pushstream_provider_reconnects", "Connection pools replaced after a "
                                         "stuck or bad connection", labels=app_labels)
        refreshes = CounterMetricFamily("pushstream_provider_auth_refreshes", "Provider tokens, JWTs or VAPID "
                                        "headers signed or fetched", labels=app_labels)
        actions = CounterMetricFamily("pushstream_provider_verdicts", "Final verdicts of a provider client, by "
                                      "action", labels=[*app_labels, "action"])
        reasons = CounterMetricFamily("pushstream_provider_reasons", "Final verdicts with a reason, by the "
                                      "provider's or pushstream's reason code", labels=[*app_labels, "reason"])
        in_flight = GaugeMetricFamily("pushstream_provider_in_flight", "Provider requests in flight now",
                                      labels=app_labels)
        memory = GaugeMetricFamily("pushstream_sent_memory_entries", "Settled batch ids a sender remembers",
                                   labels=["lane", "platform"])
        latency: dict[tuple[str, str], list[float]] = {}
        bounds: Sequence[float] = ()
        for service in list(self.services):
            memory.add_metric([service.lane, "+".join(service.platforms)], len(service.memory))
            for (app_id, platform, lane), sender in list(service.pool._senders.items()):
                labels = [app_id, platform, lane]
                c = sender.counters
                requests.add_metric(labels, c.sent)
                resends.add_metric(labels, c.resent)
                reconnects.add_metric(labels, c.reconnects)
                refreshes.add_metric(labels, c.auth_refreshes)
                for action, n in list(c.actions.items()):
                    actions.add_metric([*labels, action], n)
                for reason, n in list(c.reasons.items()):
                    reasons.add_metric([*labels, reason], n)
                current = getattr(sender, "in_flight", None)
                if callable(current):
                    in_flight.add_metric(labels, current())
                bounds = c.latency_bounds
                total = latency.setdefault((platform, lane), [0.0] * (len(bounds) + 2))
                for i, n in enumerate(c.latency_counts):
                    total[i] += n
                total[-1] += c.latency_sum
        yield from (requests, resends, reconnects, refreshes, actions, reasons, in_flight, memory)
        family = HistogramMetricFamily("pushstream_provider_request_seconds", "Provider request latency: from "
                                       "taking a send slot to the answer (or the deadline)",
                                       labels=["platform", "lane"])
        for (platform, lane), series in latency.items():
            family.add_metric([platform, lane], cumulative(bounds, series[:-1]), series[-1])
        yield family


class ProtectionCollector:
    """The breakers and mass-deactivation guards of this process's senders (`agents.protection`), per
    (app, provider) seen: 1 while open / tripped, else 0. Read at scrape time."""

    def __init__(self) -> None:
        self.sources: list[Any] = []

    def collect(self) -> Iterator[Metric]:
        labels = ["app_id", "platform"]
        breaker = GaugeMetricFamily("pushstream_breaker_open", "1 while the circuit breaker of an app's provider is "
                                    "open or half-open in this process, else 0", labels=labels)
        guard = GaugeMetricFamily("pushstream_invalidation_guard_tripped", "1 while the mass-deactivation guard "
                                  "holds back an app's provider's invalid-token answers, else 0", labels=labels)
        for source in list(self.sources):
            for app_id, platform, is_open, tripped in source.gauges():
                breaker.add_metric([app_id, platform], is_open)
                guard.add_metric([app_id, platform], tripped)
        yield breaker
        yield guard


class LagCollector:
    """Consumer lag (high watermark - position) per group, topic and partition, as last measured on a timer."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], dict[tuple[str, int], int]] = {}

    def set_group(self, role: str, group: str, lags: dict[tuple[str, int], int]) -> None:
        self._groups[(role, group)] = lags  # replaced whole: revoked partitions disappear

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("pushstream_consumer_lag", "Records between a consumer's position and the "
                                   "partition's high watermark", labels=["role", "group", "topic", "partition"])
        for (role, group), lags in list(self._groups.items()):
            for (topic, partition), lag in lags.items():
                family.add_metric([role, group, topic, str(partition)], lag)
        yield family


class TableCollector:
    """Keys per table on this worker (RocksDB's own estimate, active and standby partitions), as last measured."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("pushstream_table_keys", "Estimated keys of a table's partitions held by this "
                                   "worker (RocksDB rocksdb.estimate-num-keys)", labels=["table"])
        for table, keys in list(self.keys.items()):
            family.add_metric([table], keys)
        yield family


sender_collector = SenderCollector()
protection_collector = ProtectionCollector()
lag_collector = LagCollector()
table_collector = TableCollector()
_installed = False


def install() -> None:
    """Register the scrape-time collectors and prometheus-client's process, platform (Python) and GC collectors
    with this process's registry, once, and turn off the `*_created` samples. Called by each role's start-up
    (and the first /metrics), not on import."""
    global _installed
    if _installed:
        return
    _installed = True
    disable_created_metrics()  # no `*_created` series next to every counter: nothing here reads them
    for collector in (sender_collector, protection_collector, lag_collector, table_collector, PROCESS_COLLECTOR,
                      PLATFORM_COLLECTOR, GC_COLLECTOR):
        REGISTRY.register(collector)  # type: ignore[arg-type]


def render() -> bytes:
    install()
    return generate_latest(REGISTRY)


def watch_senders(services: Iterable[Any]) -> None:
    """Export these sender services' provider counters, in-flight requests and memory at scrape time."""
    install()
    sender_collector.services.extend(services)


def watch_protection(source: Any) -> None:
    """Export a sender process's breaker and guard states (anything with ``gauges()``) at scrape time."""
    install()
    protection_collector.sources.append(source)


async def position_lags(consumer: Any, partitions: Iterable[Any], position: Callable[[Any], Any]
                        ) -> dict[tuple[str, int], int]:
    """{(topic, partition): highwater - position} for partitions whose high watermark is known yet."""
    lags: dict[tuple[str, int], int] = {}
    for tp in list(partitions):
        highwater = consumer.highwater(tp)
        if highwater is None or highwater < 0:
            continue
        try:
            at = await asyncio.wait_for(position(tp), timeout=1.0)
        except Exception:  # revoked meanwhile, or no position yet: skip this round
            continue
        if at is not None:
            lags[(tp.topic, tp.partition)] = max(0, highwater - at)
    return lags


async def measure_sender_lag(services: Iterable[Any]) -> None:
    for service in services:
        consumer = service._consumer
        if consumer is None or not service.started:
            continue
        lag_collector.set_group("sender", service.group,
                                await position_lags(consumer, consumer.assignment(), consumer.position))


async def measure_router_lag(app: Any, group: str) -> None:
    consumer = app.consumer
    lag_collector.set_group("router", group, await position_lags(consumer, consumer.assignment(), consumer.position))


def measure_tables(app: Any) -> None:
    """RocksDB's key estimate per table, summed over the partition DBs open on this worker: a property read per
    partition, no scan. A DB closed by a rebalance meanwhile is skipped this round."""
    sizes: dict[str, int] = {}
    for table in list(app.tables.values()):
        total = 0
        for db in list(getattr(table.data, "_dbs", {}).values()):
            try:
                total += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
            except Exception:
                continue
        sizes[str(table.name)] = total
    table_collector.keys = sizes


async def lag_loop(measure: Callable[[], Any], interval: float = 5.0) -> None:
    """Measure lag every ``interval`` seconds until cancelled; a failed round is logged and skipped."""
    while True:
        started = time.monotonic()
        try:
            await measure()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("lag measurement failed", exc_info=True)
        await asyncio.sleep(max(0.5, interval - (time.monotonic() - started)))  # a timer's period, not a wait
