"""`pushstream dlq redrive` after a fixed outage, end to end: a real worker, real Kafka, the fake APNs answering
503 past max_attempts, then 200. Each dead-lettered device is delivered exactly once, however often the redrive
runs; the devices that were delivered during the outage are not sent again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import yaml

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import Kafka, Worker, make_stack, wait_for
from tests.integration.test_retries import tune

USERS = [f"u-{i}" for i in range(20)]


def apns_token(i: int) -> str:
    return f"{i:04x}" * 16


async def test_redrive_after_an_outage_delivers_each_dead_letter_once(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    tune(stack, max_attempts=2, retry_base_seconds=0.2)
    # An outage the circuit breaker would hold in the retry path (retrying/circuit_open, never dead-lettered):
    # this test is about deliveries that did run out of attempts, so the breaker never opens here.
    config = yaml.safe_load(stack.deployment.config_path.read_text())
    config["breaker"] = {"consecutive_failures": 1_000_000, "min_answers": 1_000_000}
    stack.deployment.config_path.write_text(yaml.safe_dump(config))
    worker = Worker(stack.deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    d = stack.deployment
    async with Kafka(d) as kafka:
        await kafka.publish("pushstream.devices", [
            event for i, user in enumerate(USERS) for event in (
                {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-ios",
                 "platform": "apns", "token": apns_token(i)},
                {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-android",
                 "platform": "fcm", "token": f"fcm-{user}"})])
        wait_for(lambda: all(len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 2
                             for u in USERS), timeout=60, what="registrations")
        # The outage: APNs answers 503 to everything, so each iPhone runs out of its 2 attempts.
        stack.fakes.script_fraction("apns", 1.0, 503, "ServiceUnavailable")
        await kafka.publish("pushstream.notifications", [
            {"id": "n-outage", "app_id": "demo", "title": "hello", "target": {"user_ids": USERS}}])
        letters = [orjson.loads(r.value) for r in await kafka.read(
            "pushstream.dlq", until=lambda rs: len(rs) >= len(USERS), timeout=90, settle=1.0)]
        assert len(letters) == len(USERS)
        assert Counter(letter["reason"] for letter in letters) == {
            "retries_exhausted:ServiceUnavailable": len(USERS)}
        assert all(letter["partition"] is not None and letter["offset"] is not None for letter in letters)
        outage = stack.fakes.requests("apns")
        assert len(outage) == 2 * len(USERS) and {r["status"] for r in outage} == {503}

        # The fix: APNs answers 200 again. A dry run counts and sends nothing.
        stack.fakes.reset("apns")
        dry = d.cli("dlq", "redrive", "--dry-run")
        assert f"retries_exhausted:ServiceUnavailable: would re-send {len(USERS)} devices" in dry.stdout, dry.stdout
        assert "dlq read" in dry.stderr  # the progress line
        for narrower in (["--since", "2099-01-01T00:00Z"], ["--reason", "failed"]):
            none = d.cli("dlq", "redrive", "--dry-run", *narrower)
            assert "0 devices would re-send in 0 batches" in none.stdout, none.stdout
        real = d.cli("dlq", "redrive", "--reason", "retries_exhausted")
        assert f"{len(USERS)} devices re-sent" in real.stdout, real.stdout
        statuses = await kafka.read_json("pushstream.status", timeout=90, until=lambda s: sum(
            1 for x in s if x["platform"] == "apns" and x["status"] == "delivered") >= len(USERS))
        # Again (an operator who is not sure it ran, or a redrive that crashed half-way): the same batch ids,
        # which the senders remember sending.
        again = d.cli("dlq", "redrive")
        assert f"{len(USERS)} devices re-sent" in again.stdout, again.stdout
        group = f"{d.prefix}pushstream-sender-bulk-apns"
        await kafka.wait_drained(["pushstream.deliveries.apns.bulk"], group=group, timeout=90)
        statuses = await kafka.read_json("pushstream.status", timeout=30, settle=1.0, until=lambda s: True)

    after = stack.fakes.requests("apns")
    per_token = Counter(r["key"] for r in after if r["status"] == 200)
    assert per_token == {apns_token(i): 1 for i in range(len(USERS))}
    latest = {s["device_id"]: s["status"] for s in statuses if s["notification_id"] == "n-outage"}
    assert latest == {**{f"{u}-ios": "delivered" for u in USERS}, **{f"{u}-android": "delivered" for u in USERS}}
    # (The FCM fake also records the OAuth token request: only the sends count.)
    fcm = Counter(r["key"] for r in stack.fakes.requests("fcm") if r["status"] == 200
                  and (r["key"] or "").startswith("fcm-"))
    assert all(n == 1 for n in fcm.values()) and len(fcm) == len(USERS)
    sent = len(outage) + len(after)
    delivered = sum(per_token.values())
    duplicated = delivered - len(per_token)
    lost = len(USERS) - len(per_token)
    print(f"\nredrive: sent={sent} (apns: {len(outage)} during the outage, {len(after)} after the redrive) "
          f"delivered={delivered} duplicated={duplicated} dead-lettered={len(letters)} lost={lost}; "
          f"fcm delivered={sum(fcm.values())} duplicated={sum(fcm.values()) - len(fcm)}")
    assert (len(after), duplicated, lost) == (len(USERS), 0, 0)


async def test_redrive_after_a_provider_section_is_added_routes_each_device_once(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    d = stack.deployment
    configured = d.config_path.read_text()
    config = yaml.safe_load(configured)
    del config["apps"]["demo"]["apns"]  # the cause: the app has no APNs section yet
    d.config_path.write_text(yaml.safe_dump(config))
    users = USERS[:10]
    worker = Worker(d, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    async with Kafka(d) as kafka:
        await kafka.publish("pushstream.devices", [
            event for i, user in enumerate(users) for event in (
                {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-ios",
                 "platform": "apns", "token": apns_token(i)},
                {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-android",
                 "platform": "fcm", "token": f"fcm-{user}"})])
        wait_for(lambda: all(len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 2
                             for u in users), timeout=60, what="registrations")
        await kafka.publish("pushstream.notifications", [
            {"id": "n-late", "app_id": "demo", "title": "hello", "target": {"user_ids": users}}])
        letters = [orjson.loads(r.value) for r in await kafka.read(
            "pushstream.dlq", until=lambda rs: len(rs) >= len(users), timeout=90, settle=1.0)]
        assert Counter(letter["reason"] for letter in letters) == {"platform_not_configured": len(users)}
        await kafka.read_json("pushstream.status", timeout=60, until=lambda s: sum(
            1 for x in s if x["platform"] == "fcm" and x["status"] == "delivered") >= len(users))

        # The fix: the APNs section is back; the worker restarts with it.
        worker.stop()
        d.config_path.write_text(configured)
        # The same static member: the same web port (Faust checks the member's URL in its assignment).
        worker = Worker(d, "w1", web_port=worker.web_port).start()
        workers.append(worker)
        worker.wait_ready()
        real = d.cli("dlq", "redrive", "--reason", "platform_not_configured")
        assert f"platform_not_configured: re-sent {len(users)} devices" in real.stdout, real.stdout
        await kafka.read_json("pushstream.status", timeout=90, until=lambda s: sum(
            1 for x in s if x["platform"] == "apns" and x["status"] == "delivered") >= len(users))
        again = d.cli("dlq", "redrive")
        assert f"{len(users)} devices re-sent" in again.stdout, again.stdout
        await kafka.wait_drained(["pushstream.intents.bulk"], timeout=90)
        await kafka.wait_drained(["pushstream.deliveries.apns.bulk"], group=f"{d.prefix}pushstream-sender-bulk-apns",
                                 timeout=90)
        statuses = await kafka.read_json("pushstream.status", timeout=30, settle=1.0, until=lambda s: True)

    apns = Counter(r["key"] for r in stack.fakes.requests("apns") if r["status"] == 200)
    fcm = Counter(r["key"] for r in stack.fakes.requests("fcm") if r["status"] == 200
                  and (r["key"] or "").startswith("fcm-"))
    assert apns == {apns_token(i): 1 for i in range(len(users))}
    assert fcm == {f"fcm-{u}": 1 for u in users}
    latest = {s["device_id"]: s["status"] for s in statuses if s["notification_id"] == "n-late"}
    assert set(latest.values()) == {"delivered"} and len(latest) == 2 * len(users)
    duplicated = sum(apns.values()) - len(apns) + sum(fcm.values()) - len(fcm)
    print(f"\nredrive (platform_not_configured): sent={sum(apns.values()) + sum(fcm.values())} "
          f"delivered={sum(apns.values()) + sum(fcm.values())} duplicated={duplicated} "
          f"dead-lettered={len(letters)} lost={len(users) - len(apns)}")
