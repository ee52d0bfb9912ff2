"""Prometheus metrics: one registry per process, served at GET /metrics."""

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

records_in = Counter(
    "pushstream_records_in_total", "Records read from input topics", ["topic"], registry=REGISTRY
)
dead_letters = Counter(
    "pushstream_dead_letters_total", "Records sent to the dead-letter topic", ["source", "reason"], registry=REGISTRY
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


def count_statuses(tally: Tally[tuple[str, str, str]]) -> None:
    """Add a batch's (platform, status, reason) counts: one label lookup per distinct outcome, not per device."""
    for (platform, status, reason), n in tally.items():
        statuses.labels(platform, status, reason).inc(n)
