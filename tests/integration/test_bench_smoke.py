"""The e2e benchmark (benchmarks/e2e/) runs end to end at a small scale through `pushstream bench`, in its
default split deployment (a router process, a transactional and a bulk sender process), and reports
every figure. Timing is not asserted: CI machines differ; only completeness and sanity are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

BIN = Path(sys.executable).parent


def test_bench_runs_end_to_end_and_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        str(BIN / "pushstream"), "bench",
        "--users", "2450", "--devices-per-user", "2", "--tx-users", "50",  # 2400 x 2 + 50 x 3 = 4950 devices
        "--partitions", "4", "--trickle-rate", "10", "--idle-seconds", "1",
        # A SIGKILLed member holds the group until its session times out; Faust's 60 s default would
        # dominate the test's run time.
        "--session-timeout", "6",
        "--timeout", "120", "--workdir", str(tmp_path / "work"), "--json", str(out),
    ]
    # From outside the checkout: `pushstream bench` must find benchmarks/ on its own.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "deliveries/s" in result.stdout
    report = orjson.loads(out.read_bytes())

    devices = 4950
    assert report["config"]["devices"] == devices
    assert report["machine"]["nproc"] >= 1
    processes = ["router", "sender-transactional", "sender-bulk-1"]
    assert report["config"]["deployment"] == "split" and report["config"]["processes"] == processes

    registration = report["registration"]
    assert registration["devices"] == devices
    assert sum(registration["by_platform"].values()) == devices
    assert registration["drained_seconds"] > 0 and registration["devices_per_second"] > 0

    campaign = report["campaign"]
    assert campaign["expected"] == campaign["deliveries"] == devices
    assert campaign["by_status"] == {"delivered": devices}
    assert campaign["seconds"] > 0 and campaign["deliveries_per_second"] > 0
    assert 0 <= campaign["first_status_seconds"] <= campaign["seconds"]
    assert campaign["provider_requests"] >= devices
    # The run's own check: every device exactly one final status, one provider request per final status.
    check = campaign["check"]
    assert check["ok"], check
    assert check["devices_with_final_status"] == devices and check["repeated_final_statuses"] == 0
    assert check["provider_requests"] == check["expected_requests"]
    assert campaign["sender_groups_drained"]["uncommitted"] == {}
    cpu = campaign["cpu_seconds"]
    assert cpu["workers"] > 0 and cpu["fakes"] > 0
    if report["config"]["broker_pid_visible"]:  # not with the Docker broker
        assert cpu["broker"] > 0
    per_k = campaign["cpu_seconds_per_1000_deliveries"]
    assert per_k["workers"] > 0  # every pushstream process together
    assert per_k["router"] > 0 and per_k["sender-bulk-1"] > 0
    assert abs(sum(cpu[name] for name in processes) - cpu["workers"]) < 0.05 * len(processes)
    for name in processes:
        assert campaign["peak_rss_mb"][name] > 0
        assert campaign["by_role"][name]["peak_rss_mb"] == campaign["peak_rss_mb"][name]

    tx = report["transactional"]
    assert tx["during_campaign"]["count"] == len(tx["during_campaign_latencies_ms"]) > 0
    assert all(latency > 0 for latency in tx["during_campaign_latencies_ms"])
    assert tx["during_campaign"]["p50_ms"] <= tx["during_campaign"]["p95_ms"] <= tx["during_campaign"]["p99_ms"]
    assert tx["idle"]["count"] > 0

    for scenario in ("sigkill", "sigterm", "wipe"):  # of the router
        restart = report["recovery"][scenario]
        assert restart["ready_seconds"] > 0
        assert restart["web_up_seconds"] <= restart["ready_seconds"]
    assert report["recovery"]["sigterm"]["exit_code"] == 0
