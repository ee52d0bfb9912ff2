"""Retries under faults, end to end: a real worker, real Kafka, the fake APNs scripted to answer 429 with a
Retry-After. The retry waits at least the Retry-After counted from the provider's answer, and a retry due
sooner (another notification's) is not held back by it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pushstream.rules.keys import partition_for
from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import Kafka, Stack, Worker, make_stack, wait_for

LATENCY = 1.0  # every APNs answer comes this long after its request arrives
RETRY_AFTER = 8  # what the 429 asks for
BACKOFF_BASE = 0.5  # the first retry of a 503 waits at most this (full jitter)


def tune(stack: Stack, **pipeline: Any) -> None:
    config = yaml.safe_load(stack.deployment.config_path.read_text())
    config["pipeline"].update(pipeline)
    stack.deployment.config_path.write_text(yaml.safe_dump(config))


def same_old_retry_partition(first: str, partitions: int) -> str:
    """A second notification id whose retries went to the same partition as ``first``'s on the single retry
    topic of before (keyed by app/notification): the case where a long wait blocked a short one."""
    wanted = partition_for(f"demo/{first}", partitions)
    return next(f"n-fast-{i}" for i in range(1000) if partition_for(f"demo/n-fast-{i}", partitions) == wanted)


async def test_retry_after_is_waited_from_the_answer_and_blocks_no_other_retry(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    tune(stack, retry_base_seconds=BACKOFF_BASE, retry_after_cap_seconds=20.0)
    slow_token, fast_token = "ab" * 32, "cd" * 32
    worker = Worker(stack.deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    slow_id = "n-slow"
    fast_id = same_old_retry_partition(slow_id, stack.deployment.partitions)
    async with Kafka(stack.deployment) as kafka:
        await kafka.publish("pushstream.devices", [
            {"type": "register", "app_id": "demo", "user_id": "slow", "device_id": "slow-ios", "platform": "apns",
             "token": slow_token},
            {"type": "register", "app_id": "demo", "user_id": "fast", "device_id": "fast-ios", "platform": "apns",
             "token": fast_token}])
        wait_for(lambda: all(len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 1
                             for u in ("slow", "fast")), timeout=60, what="registrations")
        stack.fakes.set_latency(LATENCY, "apns")
        stack.fakes.script("apns", slow_token, 429, "TooManyRequests", retry_after=RETRY_AFTER, times=1)
        stack.fakes.script("apns", fast_token, 503, "ServiceUnavailable", times=1)

        await kafka.publish("pushstream.notifications", [
            {"id": slow_id, "app_id": "demo", "title": "slow", "target": {"user_ids": ["slow"]}}])
        await kafka.read_json("pushstream.status", until=lambda s: any(
            x["notification_id"] == slow_id and x["status"] == "retrying" for x in s))
        # The slow retry is now waiting; the fast notification fails once after it and must not wait for it.
        await kafka.publish("pushstream.notifications", [
            {"id": fast_id, "app_id": "demo", "title": "fast", "target": {"user_ids": ["fast"]}}])
        statuses = await kafka.read_json("pushstream.status", timeout=90, settle=1.0, until=lambda s: sum(
            1 for x in s if x["status"] == "delivered") >= 2)

    requests = stack.fakes.requests("apns")
    by_token = {t: [r for r in requests if r["key"] == t] for t in (slow_token, fast_token)}
    slow, fast = by_token[slow_token], by_token[fast_token]
    assert [r["status"] for r in slow] == [429, 200] and [r["status"] for r in fast] == [503, 200]
    slow_answered, fast_answered = slow[0]["at"] + LATENCY, fast[0]["at"] + LATENCY
    slow_wait, fast_wait = slow[1]["at"] - slow_answered, fast[1]["at"] - fast_answered
    # At least the Retry-After, counted from the answer (a wait counted from the request is 1 s short).
    assert slow_wait >= RETRY_AFTER, slow_wait
    assert slow_wait < RETRY_AFTER + 5, slow_wait
    # The fast retry was due within BACKOFF_BASE of its answer and went out long before the slow one.
    assert fast[1]["at"] < slow[1]["at"]
    assert fast_wait < BACKOFF_BASE + 3, fast_wait

    final = {s["device_id"]: s for s in statuses if s["status"] in ("delivered", "dead_lettered", "failed")}
    retrying = [(s["device_id"], s["reason"]) for s in statuses if s["status"] == "retrying"]
    assert {d: (s["status"], s["attempt"]) for d, s in final.items()} == {
        "slow-ios": ("delivered", 2), "fast-ios": ("delivered", 2)}
    assert sorted(retrying) == [("fast-ios", "ServiceUnavailable"), ("slow-ios", "TooManyRequests")]
    sent = len(slow) + len(fast)
    delivered = sum(1 for r in requests if r["status"] == 200)
    duplicated = delivered - len({r["key"] for r in requests if r["status"] == 200})
    print(f"\nretry-after: sent={sent} delivered={delivered} duplicated={duplicated} dead-lettered=0 "
          f"lost={2 - len(final)}; slow waited {slow_wait:.2f} s after its answer (Retry-After {RETRY_AFTER}), "
          f"fast waited {fast_wait:.2f} s and went out {slow[1]['at'] - fast[1]['at']:.2f} s earlier")
    assert (sent, delivered, duplicated) == (4, 2, 0)
