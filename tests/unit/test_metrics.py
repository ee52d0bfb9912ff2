"""Metrics: what one settled poll adds, the scrape-time provider collector against a real client and fake, the
dashboard's and alerts' series names, and the default process/Python collectors."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pushstream import metrics
from pushstream.providers.fcm.payload import build_fcm_message
from pushstream.providers.outcome import Action, Verdict
from pushstream.rules.settle import RetryPolicy, settle
from tests.unit.sender_fixtures import FcmEnv, delivery_batch

ROOT = Path(__file__).resolve().parents[2]
POLICY = RetryPolicy(max_attempts=3, base=2.0, cap=60.0)
# Documented in docs/architecture.md as planned: a later issue exports them.
PLANNED = {"pushstream_breaker_open", "pushstream_invalidation_guard_tripped"}


def scrape() -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """name → samples (sample name, labels, value) of one /metrics rendering."""
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        out.setdefault(family.name, []).extend((s.name, s.labels, s.value) for s in family.samples)
    return out


def value(name: str, **labels: str) -> float:
    return sum(v for samples in scrape().values() for sample, got, v in samples
               if sample == name and all(got.get(k) == want for k, want in labels.items()))


def items(n: int) -> list[dict]:
    return [{"user_id": f"u-{i}", "device_id": f"d-{i}", "token": f"t-{i}", "payload": {}} for i in range(n)]


def test_observe_poll_counts_outcomes_retries_dead_letters_and_latency_per_device() -> None:
    app = "metrics-test-app"  # a label value no other test uses: the registry is per process
    published = time.time() - 0.3
    batch = delivery_batch("fcm", items(4), app_id=app, received_at=published)
    verdicts = [Verdict(Action.DELIVERED, provider_status=200), Verdict(Action.DELIVERED, provider_status=200),
                Verdict(Action.RETRY, "UNAVAILABLE", 503), Verdict(Action.FAILED, "INVALID_ARGUMENT", 400)]
    now = time.time()
    outcome = settle(batch, verdicts, now=now, at="t", policy=POLICY)
    latency_before = value("pushstream_delivery_latency_seconds_count", platform="fcm", lane="transactional")
    retries_before = value("pushstream_retries_total", platform="fcm", lane="transactional", reason="UNAVAILABLE")
    dlq_before = value("pushstream_dead_letters_total", source="sender-fcm", reason="INVALID_ARGUMENT")
    internal_before = value("pushstream_dead_letters_total", source="sender-transactional", reason="internal_error")

    metrics.observe_poll("transactional", [(batch, outcome)], answered_at=now, internal_errors=2)

    assert value("pushstream_deliveries_total", app_id=app, platform="fcm", lane="transactional",
                 status="delivered") == 2
    assert value("pushstream_deliveries_total", app_id=app, status="retrying") == 1
    assert value("pushstream_deliveries_total", app_id=app, status="failed") == 1  # and dead-lettered
    assert value("pushstream_retries_total", platform="fcm", lane="transactional",
                 reason="UNAVAILABLE") == retries_before + 1
    assert value("pushstream_dead_letters_total", source="sender-fcm",
                 reason="INVALID_ARGUMENT") == dlq_before + len(outcome.dead_letters) == dlq_before + 1
    assert value("pushstream_dead_letters_total", source="sender-transactional",
                 reason="internal_error") == internal_before + 2
    # Three final answers (two delivered, one failed) ~0.3 s after publishing: three observations, not one;
    # the retry is no final answer.
    assert value("pushstream_delivery_latency_seconds_count", platform="fcm",
                 lane="transactional") == latency_before + 3


def test_count_histogram_buckets_are_cumulative_and_weighted() -> None:
    histogram = metrics.CountHistogram("h_seconds", "h", ["lane"], (0.1, 1.0))
    histogram.observe(("x",), 0.05, 3)
    histogram.observe(("x",), 0.5, 2)
    histogram.observe(("x",), 7.0)
    (family,) = histogram.collect()
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("h_seconds_bucket", "0.1")] == 3
    assert samples[("h_seconds_bucket", "1.0")] == 5
    assert samples[("h_seconds_bucket", "+Inf")] == 6
    assert samples[("h_seconds_count", None)] == 6
    assert samples[("h_seconds_sum", None)] == pytest.approx(0.15 + 1.0 + 7.0)


@pytest.mark.asyncio
async def test_provider_counters_latency_and_in_flight_are_exported_at_scrape(fcm: FcmEnv) -> None:
    payload = build_fcm_message({"priority": "high"}, "t", "b")
    batch = delivery_batch("fcm", [{"user_id": "u", "device_id": f"d-{i}", "token": f"tok-{i}", "payload": payload}
                                   for i in range(5)], app_id="scrape-app")
    verdicts = await fcm.sender.send_batch(batch)
    assert {v.action for v in verdicts} == {Action.DELIVERED}
    service = SimpleNamespace(lane="transactional", platforms=("fcm",), memory=[1, 2, 3],
                              pool=SimpleNamespace(_senders={("scrape-app", "fcm", "transactional"): fcm.sender}))
    metrics.watch_senders([service])
    try:
        labels = {"app_id": "scrape-app", "platform": "fcm", "lane": "transactional"}
        assert value("pushstream_provider_requests_total", **labels) == 5
        assert value("pushstream_provider_verdicts_total", action="delivered", **labels) == 5
        assert value("pushstream_provider_in_flight", **labels) == 0
        assert value("pushstream_provider_auth_refreshes_total", **labels) >= 1
        assert value("pushstream_provider_request_seconds_count", platform="fcm", lane="transactional") >= 5
        assert value("pushstream_sent_memory_entries", lane="transactional", platform="fcm") >= 3
    finally:
        metrics.sender_collector.services.remove(service)


def test_process_and_python_collectors_are_registered() -> None:
    names = set(scrape())
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info", "python_gc_objects_collected"} \
        <= names


def test_lag_collector_replaces_a_groups_partitions() -> None:
    metrics.lag_collector.set_group("sender", "g-test", {("t", 0): 5, ("t", 1): 7})
    metrics.lag_collector.set_group("sender", "g-test", {("t", 1): 2})
    assert value("pushstream_consumer_lag", group="g-test", partition="0") == 0
    assert value("pushstream_consumer_lag", group="g-test", partition="1") == 2


def documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`((?:pushstream|process|python)_[a-z_]+)", section))


def test_dashboard_and_alerts_use_only_documented_series() -> None:
    documented = documented_metrics()
    exprs = [t["expr"] for p in json.loads((ROOT / "deploy/grafana/pushstream.json").read_text())["panels"]
             for t in p["targets"]]
    exprs.append((ROOT / "deploy/prometheus/alerts.yml").read_text())
    used = {re.sub(r"_(bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"\bpushstream_[a-z_]+", e)}
    assert used <= documented, used - documented
    assert documented >= PLANNED


def test_every_exported_series_is_documented() -> None:
    exported = {name for name in scrape() if name.startswith("pushstream_")}
    documented = documented_metrics()
    missing = {n for n in exported if n not in documented and f"{n}_total" not in documented}
    assert not missing, missing
