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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushstream.models.status import FINAL_STATUSES
from pushstream.testing.campaign import CampaignOutcome
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


async def campaign_with_faults(stack: Stack, kafka: Kafka, steps: list[Step], *, notification_id: str,
                               devices: set[str], timeout: float = 240) -> CampaignOutcome:
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

    outcome = CampaignOutcome(notification_id, devices)
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
            outcome.add_request(device_of(provider, request["key"]), request["at"], request["peer_port"],
                                request["path"])
    return outcome
