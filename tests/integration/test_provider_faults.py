"""Provider faults against real workers, real Kafka and the fakes: an APNs outage (503) behind the circuit
breaker, and a wrong APNs environment (every answer 400 BadDeviceToken) behind the mass-deactivation guard.

Each prints sent / delivered / duplicated / dead-lettered / lost, counted from the status topic and the fake's
request log: delivered = devices whose last status is `delivered`; duplicated = 200 answers at the fake beyond
one per device; lost = devices without a final status.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import Kafka, Stack, Worker, make_stack, wait_for

FINAL = {"delivered", "invalid_token", "failed", "dead_lettered", "suppressed"}
IOS_USERS = 30
ANDROID_USERS = 5
OUTAGE_SECONDS = 30


def protected_stack(root: Path, fakes: FakesProcess) -> Stack:
    """A stack whose breakers probe soon (1 s, at most 2 s between probes) so a test sees open and close."""
    stack = make_stack(root, fakes)
    config = yaml.safe_load(stack.deployment.config_path.read_text())
    config["breaker"] = {"open_seconds": 1.0, "max_open_seconds": 2.0, "probe_size": 5}
    config["pipeline"]["retry_base_seconds"] = 0.5
    stack.deployment.config_path.write_text(yaml.safe_dump(config))
    return stack


def ios_token(i: int) -> str:
    return f"{i:08x}" * 8


def registrations() -> list[dict[str, Any]]:
    events = [{"type": "register", "app_id": "demo", "user_id": f"i-{i:03d}", "device_id": f"i-{i:03d}-ios",
               "platform": "apns", "token": ios_token(i)} for i in range(IOS_USERS)]
    events += [{"type": "register", "app_id": "demo", "user_id": f"a-{i:03d}", "device_id": f"a-{i:03d}-android",
                "platform": "fcm", "token": f"fcm-a-{i:03d}"} for i in range(ANDROID_USERS)]
    return events


def gauge(worker: Worker, name: str, platform: str = "apns") -> float | None:
    text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    match = re.search(rf'^{name}{{app_id="demo",platform="{platform}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else None


def last_status(records: list[dict[str, Any]], notification_id: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["notification_id"] == notification_id:
            out[record["device_id"]] = record
    return out


def counts(records: list[dict[str, Any]], notification_id: str, devices: int,
           fake_requests: list[dict[str, Any]]) -> dict[str, int]:
    final = {d: s for d, s in last_status(records, notification_id).items() if s["status"] in FINAL}
    ok = Counter(r["key"] for r in fake_requests if r["status"] == 200)
    return {"sent": devices, "delivered": sum(1 for s in final.values() if s["status"] == "delivered"),
            "duplicated": sum(n - 1 for n in ok.values() if n > 1),
            "dead_lettered": sum(1 for s in final.values() if s["status"] == "dead_lettered"),
            "lost": devices - len(final)}


async def start_with_devices(stack: Stack, kafka: Kafka, workers: list[Worker]) -> Worker:
    worker = Worker(stack.deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    await kafka.publish("pushstream.devices", registrations())
    wait_for(lambda: all(len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 1
                         for u in ("i-000", f"i-{IOS_USERS - 1:03d}", "a-000", f"a-{ANDROID_USERS - 1:03d}")),
             timeout=60, what="registrations")
    return worker


def at_seconds(record: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(record["at"].replace("Z", "+00:00")).timestamp()


async def otp_latencies(kafka: Kafka, tag: str) -> list[float]:
    """Publish one transactional notification per Android user, one at a time: publish → delivered seconds."""
    latencies = []
    for i in range(ANDROID_USERS):
        nid = f"otp-{tag}-{i}"
        published = time.time()
        await kafka.publish("pushstream.notifications", [{
            "id": nid, "app_id": "demo", "channel": "transactional", "priority": "high", "title": "code",
            "target": {"user_ids": [f"a-{i:03d}"]}}])
        def delivered(s: list[dict[str, Any]], n: str = nid) -> bool:
            return any(r["notification_id"] == n and r["status"] == "delivered" for r in s)

        records = await kafka.read_json("pushstream.status", until=delivered, timeout=30)
        (status,) = [r for r in records if r["notification_id"] == nid]
        latencies.append(at_seconds(status) - published)
    return latencies


async def test_an_apns_outage_opens_the_breaker_holds_deliveries_and_fcm_keeps_its_latency(
        tmp_path: Path, fakes: FakesProcess, workers: list[Worker]) -> None:
    stack = protected_stack(tmp_path / "d", fakes)
    async with Kafka(stack.deployment) as kafka:
        worker = await start_with_devices(stack, kafka, workers)
        before = await otp_latencies(kafka, "before")

        stack.fakes.script_fraction("apns", 1.0, 503, reason="ServiceUnavailable")
        outage_started = time.monotonic()
        await kafka.publish("pushstream.notifications", [{
            "id": "n-outage", "app_id": "demo", "channel": "transactional", "priority": "high",
            "title": "Your order shipped", "ttl": 3600,
            "target": {"user_ids": [f"i-{i:03d}" for i in range(IOS_USERS)]}}])
        wait_for(lambda: gauge(worker, "pushstream_breaker_open") == 1.0, timeout=30, what="the breaker opens")
        held = await kafka.read_json("pushstream.status", until=lambda s: any(
            r["notification_id"] == "n-outage" and r["reason"] == "circuit_open" for r in s), timeout=30)
        assert all(r["status"] == "retrying" for r in held if r["reason"] == "circuit_open")
        during = await otp_latencies(kafka, "during")
        # Probes, not hammering: while open the fake sees a probe of at most 5 devices every 1-2 s.
        opened_requests = len(stack.fakes.requests("apns"))
        wait_for(lambda: len(stack.fakes.requests("apns")) >= opened_requests + 10, timeout=30,
                 what="two more probes")
        wait_for(lambda: time.monotonic() - outage_started >= OUTAGE_SECONDS, timeout=OUTAGE_SECONDS + 5,
                 interval=0.5, what="the outage's end")  # the scripted fault's length, not a synchronisation
        outage_requests = len(stack.fakes.requests("apns"))

        stack.fakes.script_fraction("apns", 0.0, 200)  # APNs recovers
        records = await kafka.read_json("pushstream.status", until=lambda s: sum(
            1 for r in last_status(s, "n-outage").values() if r["status"] in FINAL) == IOS_USERS, timeout=60,
            settle=1.0)
        wait_for(lambda: gauge(worker, "pushstream_breaker_open") == 0.0, timeout=30, what="the breaker closes")
        after = await otp_latencies(kafka, "after")

    tally = counts(records, "n-outage", IOS_USERS, stack.fakes.requests("apns"))
    circuit_open = sum(1 for r in records if r["notification_id"] == "n-outage" and r["reason"] == "circuit_open")
    print(f"\napns outage: {tally}; {outage_requests} apns requests during a {IOS_USERS}-device outage "
          f"({circuit_open} circuit_open statuses)")
    print(f"fcm transactional publish->delivered seconds: before {max(before):.3f} max / "
          f"{sum(before) / len(before):.3f} mean, during {max(during):.3f} / {sum(during) / len(during):.3f}, "
          f"after {max(after):.3f} / {sum(after) / len(after):.3f}")
    assert tally == {"sent": IOS_USERS, "delivered": IOS_USERS, "duplicated": 0, "dead_lettered": 0, "lost": 0}
    # Held, not hammered: the first answers, then one probe of 5 at most every open_seconds (1 s). Without the
    # breaker the 0.5 s-based backoff would have used up all 5 attempts in ~8 s and dead-lettered every device.
    assert outage_requests <= IOS_USERS + 5 * (OUTAGE_SECONDS + 1)
    assert max(during) < max(1.0, 3 * max(before))
    log = (stack.deployment.root / "w1.log").read_text(errors="replace")
    assert "circuit breaker opened for demo/apns" in log and "circuit breaker closed for demo/apns" in log


async def test_a_wrong_apns_environment_trips_the_guard_and_deactivates_nobody(
        tmp_path: Path, fakes: FakesProcess, workers: list[Worker]) -> None:
    stack = protected_stack(tmp_path / "d", fakes)
    async with Kafka(stack.deployment) as kafka:
        worker = await start_with_devices(stack, kafka, workers)
        # Sandbox tokens against production APNs. The 30 users fall 6/10/9/5 into the 4 user partitions, so every
        # delivery batch holds at least confirm_min_invalid (5) devices: the guard suspects the first batch it
        # hears, whichever it is, and trips within its confirmation time. Zero deactivations is exact here.
        stack.fakes.script_fraction("apns", 1.0, 400, reason="BadDeviceToken")
        await kafka.publish("pushstream.notifications", [{
            "id": "n-env", "app_id": "demo", "channel": "transactional", "priority": "high", "title": "Hello",
            "ttl": 3600, "target": {"user_ids": [f"i-{i:03d}" for i in range(IOS_USERS)]}}])
        wait_for(lambda: gauge(worker, "pushstream_invalidation_guard_tripped") == 1.0, timeout=30,
                 what="the guard trips")
        assert gauge(worker, "pushstream_breaker_open") == 1.0
        held = await kafka.read_json("pushstream.status", until=lambda s: sum(
            1 for r in s if r["notification_id"] == "n-env") >= IOS_USERS, timeout=30)
        assert {(r["status"], r["provider_status"]) for r in held if r["notification_id"] == "n-env"} == {
            ("retrying", 400)}
        assert {r["reason"] for r in held if r["notification_id"] == "n-env"} <= {"circuit_open", "invalidation_guard"}
        # A probe or two more hear the same: still tripped, still nobody deactivated.
        seen = len(stack.fakes.requests("apns"))
        wait_for(lambda: len(stack.fakes.requests("apns")) >= seen + 10, timeout=30, what="two more probes")
        assert gauge(worker, "pushstream_invalidation_guard_tripped") == 1.0

        def inactive() -> list[str]:
            return [u for u in (f"i-{i:03d}" for i in range(IOS_USERS))
                    if any(d["status"] != "active" for d in worker.get(f"/v1/apps/demo/users/{u}/devices").json()[
                        "devices"])]

        assert inactive() == []
        stack.fakes.script_fraction("apns", 0.0, 200)  # the config fix: the right environment answers 200
        records = await kafka.read_json("pushstream.status", until=lambda s: sum(
            1 for r in last_status(s, "n-env").values() if r["status"] in FINAL) == IOS_USERS, timeout=60,
            settle=1.0)
        wait_for(lambda: gauge(worker, "pushstream_invalidation_guard_tripped") == 0.0, timeout=30,
                 what="the guard resets")
        assert gauge(worker, "pushstream_breaker_open") == 0.0
        assert inactive() == []
        events = await kafka.read_json("pushstream.user-events", until=lambda s: True, timeout=10, settle=0.5)

    tally = counts(records, "n-env", IOS_USERS, stack.fakes.requests("apns"))
    invalid = sum(1 for r in records if r["notification_id"] == "n-env" and r["status"] == "invalid_token")
    deactivations = sum(1 for batch in events for e in batch.get("events", []) if e.get("kind") == "deactivate")
    print(f"\nwrong apns environment: {tally}; {invalid} invalid_token statuses, {deactivations} deactivations")
    assert tally == {"sent": IOS_USERS, "delivered": IOS_USERS, "duplicated": 0, "dead_lettered": 0, "lost": 0}
    assert invalid == 0 and deactivations == 0
    log = (stack.deployment.root / "w1.log").read_text(errors="replace")
    errors = [line for line in log.splitlines() if "invalidation guard tripped for demo/apns" in line]
    assert len(errors) == 1
    line = orjson.loads(errors[0])
    assert line["level"] == "error" and (line["app_id"], line["platform"]) == ("demo", "apns")
    assert line["invalid"] == line["answers"] >= 20
