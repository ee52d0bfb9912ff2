"""GOAWAY every N requests from the APNs and FCM fakes (both HTTP/2) during a broadcast: no hang, nothing lost,
every device exactly one final status, the fakes' accepted requests equal the deliveries.

A GOAWAY names the last stream the fake processed; the streams above it were never processed and the sender
resends them on a new connection (`pushstream_provider_resends`). Printed: sent / delivered / duplicated /
dead-lettered / lost, the GOAWAYs, connections and the resends per provider.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from pushstream.models.status import FINAL_STATUSES
from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import free_port
from tests.integration.crash import PROVIDERS, device_of, register
from tests.integration.harness import Kafka, RoleProcess, make_stack

USERS = 1500  # an iPhone and an Android phone each: 3,000 devices
GOAWAY_AFTER = 50


def metric_sum(url: str, name: str, platform: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(
        rf'^{name}(?:_total)?{{[^}}]*platform="{platform}"[^}}]*}} (\S+)$', text, re.MULTILINE))


async def test_goaway_every_50_requests_loses_nothing_and_repeats_nothing(
        tmp_path: Path, fakes: FakesProcess, processes: list[Any]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    d = stack.deployment
    router_port, sender_port = free_port(), free_port()
    router = RoleProcess(d, "router", ["--role", "router", "--datadir", str(d.root / "data-router"),
                                       "--web-host", "127.0.0.1", "--web-port", str(router_port)], router_port)
    sender = RoleProcess(d, "bulk", ["--role", "sender", "--lane", "bulk", "--web-port", str(sender_port)],
                         sender_port)
    for process in (router, sender):
        processes.append(process.start())
    for process in (router, sender):
        process.wait_ready()
    async with Kafka(d) as kafka:
        await register(stack, kafka, [router], USERS)  # type: ignore[list-item]
        for provider in PROVIDERS:
            stack.fakes.reset(provider)
            stack.fakes.goaway_after(provider, GOAWAY_AFTER)
        started = time.monotonic()
        await kafka.publish("pushstream.notifications", [
            {"id": "sale-goaway", "app_id": "demo", "channel": "marketing", "title": "sale",
             "target": {"all": True}}])
        devices = 2 * USERS

        def complete(records: list[dict[str, Any]]) -> bool:
            return len({r["device_id"] for r in records if r["notification_id"] == "sale-goaway"
                        and r["status"] in FINAL_STATUSES}) >= devices

        # No hang: every device has its final status well within the deadline (seconds on an idle machine).
        records = await kafka.read_json("pushstream.status", until=complete, timeout=150, settle=2.0)
        took = time.monotonic() - started
        dead = await kafka.read_json("pushstream.dlq", until=lambda _: True, timeout=10, settle=0.5)

    finals: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for record in records:
        if record["notification_id"] == "sale-goaway" and record["status"] in FINAL_STATUSES:
            finals[record["device_id"]] += 1
            statuses[record["status"]] += 1
    accepted: Counter[str] = Counter()
    stats = stack.fakes.stats()
    report = {}
    for provider in PROVIDERS:
        requests = [r for r in stack.fakes.requests(provider) if r["path"].startswith(("/3/device/", "/v1/projects/"))]
        for request in requests:
            if request["status"] == 200:
                accepted[device_of(provider, request["key"])] += 1
        report[provider] = {"requests": len(requests), "goaways": stats[provider]["goaways"],
                            "connections": stats[provider]["connections"],
                            "resent": int(metric_sum(sender.url, "pushstream_provider_resends", provider))}
    tally = {"sent": devices, "delivered": statuses["delivered"],
             "duplicated": sum(n - 1 for n in accepted.values() if n > 1),
             "dead_lettered": statuses["dead_lettered"], "lost": devices - len(finals)}
    print(f"\ngoaway every {GOAWAY_AFTER}: {tally}; {took:.1f}s; {report}")
    assert tally == {"sent": devices, "delivered": devices, "duplicated": 0, "dead_lettered": 0, "lost": 0}
    assert set(finals.values()) == {1}, "a device with more than one final status"
    assert sum(accepted.values()) == statuses["delivered"] == devices  # the fakes' accepted requests == deliveries
    assert dead == []
    for provider in PROVIDERS:
        # No connection carried more than 50 requests, and GOAWAYs cut them: the last connection, and one the
        # sender replaced itself (idle, reconnect), may end without one.
        assert report[provider]["connections"] >= USERS // GOAWAY_AFTER, report
        assert report[provider]["goaways"] >= report[provider]["connections"] - 3, report
        assert report[provider]["requests"] == USERS, report  # processed once each; unprocessed ones resent
    assert router.alive() and sender.alive()
