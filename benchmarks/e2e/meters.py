"""What a run costs: CPU seconds and peak RSS per process from /proc, and the machine it ran on."""

from __future__ import annotations

import os
import platform as host_platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KAFKA_RUN_DIR = Path.home() / ".cache" / "pushstream"  # scripts/kafka/ctl: kafka-run-<port>/kafka.pid
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
