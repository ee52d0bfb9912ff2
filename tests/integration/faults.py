"""Faults during one broadcast campaign, and the counts that say what they cost.

A test-owned broker or cluster (scripts/kafka/ctl on free ports, never the shared broker), and a campaign run
through a list of fault steps, each taken once a given share of the devices was pushed: SIGKILL a role process
and restart it, kill or restart a broker node, stop the single broker for a while. The outcome counts, per
device, the requests the fakes received and the final status records, and says which repeats a kill explains
(the earlier request came on a connection of a process that was then SIGKILLed).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushstream.models.status import FINAL_STATUSES
from pushstream.testing.stack import free_port
from tests.integration.crash import PROVIDERS, device_of, provider_counts
from tests.integration.harness import ROOT, Kafka, Stack, wait_for

CTL = ROOT / "scripts" / "kafka" / "ctl"


class LocalKafka:
    """A broker or cluster of its own for one test module: `scripts/kafka/ctl` with its own state dir and free
    ports, so killing a node never touches the shared broker on 9092."""

    def __init__(self, home: Path, brokers: int = 1, heap: str = "384m") -> None:
        self.home, self.brokers = home, brokers
        ports = [free_port() for _ in range(2 * brokers)]
        self.ports, self.controller_ports = ports[:brokers], ports[brokers:]
        self.env = {**os.environ, "PUSHSTREAM_KAFKA_HOME": str(home), "PUSHSTREAM_KAFKA_MODE": "jvm",
                    "PUSHSTREAM_KAFKA_HEAP": heap, "PUSHSTREAM_KAFKA_STOP_TIMEOUT": "20"}
        if brokers == 1:
            self.env["PUSHSTREAM_KAFKA_PORT"] = str(self.ports[0])
            self.env["PUSHSTREAM_KAFKA_CONTROLLER_PORT"] = str(self.controller_ports[0])
        else:
            self.env["PUSHSTREAM_KAFKA_PORTS"] = ",".join(map(str, self.ports))
            self.env["PUSHSTREAM_KAFKA_CONTROLLER_PORTS"] = ",".join(map(str, self.controller_ports))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def ctl(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run([str(CTL), *args], env=self.env, text=True, capture_output=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"ctl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def start(self) -> LocalKafka:
        self.ctl("start", *(("--brokers", str(self.brokers)) if self.brokers > 1 else ()))
        return self

    def stop(self) -> None:
        self.ctl("stop")

    def reset(self) -> None:
        """Stop and remove the data. A cluster's nodes are SIGKILLed first: its data is thrown away, and a
        controlled shutdown of three nodes at once costs seconds for nothing."""
        if self.brokers > 1:
            for node in range(1, self.brokers + 1):
                self.kill_broker(node)
        self.ctl("reset")

    def kill_broker(self, node: int) -> None:
        self.ctl("kill-broker", str(node))

    def start_broker(self, node: int) -> None:
        self.ctl("start-broker", str(node))


@dataclass
class Step:
    """A fault taken once ``at`` of the campaign's devices were pushed (or, with ``within``, at the latest that
    many seconds after the previous step: a fault that stalls the campaign must not block its own repair).
    ``act`` returns the local TCP ports of a process it SIGKILLed (empty otherwise): requests that came on
    them may be repeated by its successor."""

    at: float
    label: str
    act: Callable[[], set[int]]
    within: float | None = None


@dataclass
class FaultOutcome:
    notification_id: str
    devices: set[str]
    steps: list[str] = field(default_factory=list)  # label @ pushed requests when taken
    pushed_at_steps: list[int] = field(default_factory=list)  # provider requests seen when each step was taken
    requests: dict[str, list[tuple[float, int | None]]] = field(default_factory=dict)  # device → (at, port)
    finals: Counter[str] = field(default_factory=Counter)  # device → final status records
    statuses: Counter[str] = field(default_factory=Counter)  # final status → devices
    dead_ports: set[int] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(len(seen) for seen in self.requests.values())

    @property
    def duplicated(self) -> int:
        """Requests beyond the first per device."""
        return sum(len(seen) - 1 for seen in self.requests.values() if len(seen) > 1)

    @property
    def unexplained_duplicates(self) -> int:
        """Repeats whose earlier request did not come on a connection of a process that was then SIGKILLed."""
        return sum(1 for seen in self.requests.values()
                   for _, port in sorted(seen, key=lambda s: s[0])[:-1] if port not in self.dead_ports)

    @property
    def missing_at_fakes(self) -> int:
        return len(self.devices - set(self.requests))

    @property
    def lost(self) -> int:
        """Devices without a final status, or with a final status but never pushed."""
        return len(self.devices - set(self.finals)) + self.missing_at_fakes

    @property
    def multiple_finals(self) -> int:
        return sum(1 for n in self.finals.values() if n > 1)

    def summary(self) -> str:
        return (f"{self.notification_id}: {len(self.devices)} devices in {self.seconds:.0f}s; "
                f"sent {self.sent}, delivered {self.statuses.get('delivered', 0)}, duplicated {self.duplicated} "
                f"(unexplained by a kill {self.unexplained_duplicates}), "
                f"dead-lettered {self.statuses.get('dead_lettered', 0)}, lost {self.lost}, "
                f"devices with >1 final status {self.multiple_finals}, finals {dict(self.statuses)}; "
                f"faults: {', '.join(self.steps)}")


async def campaign_with_faults(stack: Stack, kafka: Kafka, steps: list[Step], *, notification_id: str,
                               devices: set[str], timeout: float = 240) -> FaultOutcome:
    """Start a broadcast to every device, take each step once its share of the devices was pushed, then wait
    until every device has a final status and count what reached the fakes."""
    started = time.monotonic()
    before = provider_counts(stack)
    await kafka.publish("pushstream.notifications", [
        {"id": notification_id, "app_id": "demo", "channel": "marketing", "title": "sale",
         "target": {"all": True}}])

    def pushed() -> int:
        now = provider_counts(stack)
        return sum(now[p] - before[p] for p in PROVIDERS)

    outcome = FaultOutcome(notification_id, devices)
    previous = time.monotonic()
    for step in sorted(steps, key=lambda s: s.at):
        due = previous + step.within if step.within is not None else None

        def reached(s: Any = step, due: float | None = due) -> bool:
            return pushed() >= max(1, int(s.at * len(devices))) or (due is not None and time.monotonic() >= due)

        wait_for(reached, timeout=timeout, interval=0.02,
                 what=f"{step.at:.0%} of the campaign pushed (before {step.label})")
        outcome.pushed_at_steps.append(pushed())
        outcome.steps.append(f"{step.label}@{outcome.pushed_at_steps[-1]}")
        outcome.dead_ports |= step.act()
        previous = time.monotonic()

    def complete(records: list[dict[str, Any]]) -> bool:
        mine = {r["device_id"] for r in records
                if r["notification_id"] == notification_id and r["status"] in FINAL_STATUSES}
        return len(mine) >= len(devices)

    records = await kafka.read_json("pushstream.status", until=complete, timeout=timeout, settle=3.0)
    outcome.seconds = time.monotonic() - started
    for record in records:
        if record["notification_id"] == notification_id and record["status"] in FINAL_STATUSES:
            outcome.finals[record["device_id"]] += 1
            outcome.statuses[record["status"]] += 1
    for provider in PROVIDERS:
        for request in stack.fakes.requests(provider, since=before[provider]):
            if not request["path"].startswith(("/3/device/", "/v1/projects/")):
                continue  # OAuth token fetches
            outcome.requests.setdefault(device_of(provider, request["key"]), []).append(
                (request["at"], request["peer_port"]))
    return outcome
