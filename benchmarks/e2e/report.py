"""Figures out of the raw samples: percentiles, the code version measured, the printed summary."""

from __future__ import annotations

import math
import subprocess
from typing import Any

from benchmarks.e2e.options import ROOT


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """Nearest-rank p50/p95/p99 (ms) and max."""
    ordered = sorted(values)

    def rank(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)

    return {"count": len(ordered), "p50_ms": rank(50), "p95_ms": rank(95), "p99_ms": rank(99),
            "max_ms": round(ordered[-1], 1) if ordered else None}


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
