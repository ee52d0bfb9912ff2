"""Delivery end to end: real workers, real Kafka, the fake providers speaking the real protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import Kafka, Stack, Worker, make_stack, wait_for

APNS = "a1" * 32


def registrations(stack: Stack, users: list[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i, user in enumerate(users):
        events += [
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-ios", "platform": "apns",
             "token": f"{i:04x}" * 16, "locale": "de-DE"},
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-android",
             "platform": "fcm", "token": f"fcm-{user}", "locale": "de-AT"},
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-web",
             "platform": "webpush", "subscription": stack.subscription(f"web-{user}"), "locale": "en-US"},
        ]
    return events


def start(stack: Stack, workers: list[Worker], count: int = 1) -> Worker:
    for n in range(count):
        workers.append(Worker(stack.deployment, f"w{n + 1}").start())
    for worker in workers:
        worker.wait_ready()
    return workers[0]


def statuses_of(records: list[dict[str, Any]], notification_id: str) -> dict[str, tuple[str, Any]]:
    """device_id → (status, reason) of the last status record per device."""
    return {s["device_id"]: (s["status"], s["reason"]) for s in records if s["notification_id"] == notification_id}


async def test_exact_bytes_at_each_provider_and_dead_tokens_deactivate(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    worker = start(stack, workers)
    users = ["u-1", "u-2"]
    async with Kafka(stack.deployment) as kafka:
        await kafka.publish("pushstream.devices", registrations(stack, users))
        wait_for(lambda: all(len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 3
                             for u in users), timeout=60, what="registrations")
        # u-2's devices are dead at every provider.
        stack.fakes.unregister("apns", "0001" * 16)
        stack.fakes.unregister("fcm", "fcm-u-2")
        stack.fakes.unregister("webpush", "web-u-2")

        await kafka.publish("pushstream.notifications", [{
            "id": "n-42", "app_id": "demo", "channel": "transactional", "priority": "high",
            "target": {"user_ids": users}, "title": "Your order shipped", "body": "Arrives Tuesday",
            "data": {"order_id": 42, "carrier": "DHL"}, "ttl": 3600, "collapse_key": "order-42",
            "localized": {"de": {"title": "Bestellung versandt", "body": "Ankunft Dienstag"}},
        }])
        statuses = await kafka.read_json(
            "pushstream.status", until=lambda s: len(statuses_of(s, "n-42")) >= 6, settle=0.5)
        by_device = {s["device_id"]: s for s in statuses if s["notification_id"] == "n-42"}
        assert {d: by_device[d]["status"] for d in by_device} == {
            "u-1-ios": "delivered", "u-1-android": "delivered", "u-1-web": "delivered",
            "u-2-ios": "invalid_token", "u-2-android": "invalid_token", "u-2-web": "invalid_token"}
        assert by_device["u-1-ios"]["provider_status"] == 200
        assert by_device["u-2-ios"]["provider_status"] == 410
        assert by_device["u-2-android"]["provider_status"] == 404
        assert by_device["u-2-web"]["provider_status"] == 410

        apns = [r for r in stack.fakes.requests("apns") if r["key"] == "0000" * 16]
        assert len(apns) == 1
        headers = apns[0]["headers"]
        assert headers["apns-push-type"] == "alert"
        assert headers["apns-priority"] == "10"
        assert headers["apns-topic"] == stack.setup["apns_topic"]
        assert headers["apns-collapse-id"] == "order-42"
        assert int(headers["apns-expiration"]) > 0
        assert len(headers["apns-id"]) == 36
        assert orjson.loads(apns[0]["body"]) == {
            "aps": {"alert": {"title": "Bestellung versandt", "body": "Ankunft Dienstag"}, "thread-id": "order-42"},
            "order_id": 42, "carrier": "DHL"}

        fcm = [r for r in stack.fakes.requests("fcm") if r["key"] == "fcm-u-1"]
        assert len(fcm) == 1
        message = fcm[0]["json"]["message"]
        assert message["token"] == "fcm-u-1"
        assert message["notification"] == {"title": "Bestellung versandt", "body": "Ankunft Dienstag"}
        assert message["data"] == {"order_id": "42", "carrier": "DHL"}
        assert message["android"]["priority"] == "HIGH" and message["android"]["collapse_key"] == "order-42"
        assert message["android"]["ttl"].endswith("s")

        web = [r for r in stack.fakes.requests("webpush") if r["key"] == "web-u-1"]
        assert len(web) == 1
        assert orjson.loads(web[0]["plaintext"]) == {
            "id": "n-42", "title": "Your order shipped", "body": "Arrives Tuesday",
            "data": {"order_id": 42, "carrier": "DHL"}, "tag": "order-42"}
        web_headers = {k.lower(): v for k, v in web[0]["headers"].items()}
        assert web_headers["urgency"] == "high" and web_headers["topic"] == "order-42"
        assert web_headers["content-encoding"] == "aes128gcm"

        # Feedback: the dead devices are now inactive, with the provider's reason...
        def inactive() -> dict[str, Any]:
            view = worker.get("/v1/apps/demo/users/u-2/devices").json()["devices"]
            return {d["device_id"]: d["inactive_reason"] for d in view if d["status"] == "inactive"}

        reasons = wait_for(lambda: len(inactive()) == 3 and inactive(), timeout=30, what="deactivation")
        assert reasons["u-2-ios"] == "apns:Unregistered"
        assert reasons["u-2-android"] == "fcm:UNREGISTERED"
        assert reasons["u-2-web"].startswith("webpush:")
        # ...and the next notification skips them: no request reaches a provider for u-2.
        sent_before = {p: len(stack.fakes.requests(p)) for p in ("apns", "fcm", "webpush")}
        await kafka.publish("pushstream.notifications", [
            {"id": "n-43", "app_id": "demo", "title": "again", "target": {"user_ids": users}}])
        statuses = await kafka.read_json(
            "pushstream.status", until=lambda s: len(statuses_of(s, "n-43")) >= 6, settle=0.5)
        assert statuses_of(statuses, "n-43") == {
            "u-1-ios": ("delivered", None), "u-1-android": ("delivered", None), "u-1-web": ("delivered", None),
            "u-2-ios": ("suppressed", "inactive"), "u-2-android": ("suppressed", "inactive"),
            "u-2-web": ("suppressed", "inactive")}
        assert {p: len(stack.fakes.requests(p)) - sent_before[p] for p in sent_before} == {
            "apns": 1, "fcm": 1, "webpush": 1}


async def test_a_failing_provider_does_not_delay_the_others(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    worker = start(stack, workers)
    users = [f"u-{i}" for i in range(30)]
    async with Kafka(stack.deployment) as kafka:
        await kafka.publish("pushstream.devices", registrations(stack, users))
        wait_for(lambda: all(len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 3
                             for u in users), timeout=60, what="registrations")
        # APNs is down: every answer is a 503, and each takes 4 s to come.
        stack.fakes.script_fraction("apns", 1.0, 503, "ServiceUnavailable")
        stack.fakes.set_latency(4.0, "apns")
        await kafka.publish("pushstream.notifications", [
            {"id": "n-1", "app_id": "demo", "title": "hello", "target": {"user_ids": users}}])
        statuses = await kafka.read_json(
            "pushstream.status",
            until=lambda s: sum(1 for x in s if x["platform"] == "apns" and x["status"] == "retrying") >= 30)
        fcm_done = sorted(s["at"] for s in statuses if s["platform"] in ("fcm", "webpush"))
        first_apns_answer = min(s["at"] for s in statuses if s["platform"] == "apns")
        assert len(fcm_done) == 60 and all(s["status"] == "delivered" for s in statuses if s["platform"] != "apns")
        # Every FCM and Web Push device had its outcome before APNs answered anything.
        assert fcm_done[-1] < first_apns_answer
        apns = [s for s in statuses if s["platform"] == "apns"]
        # 30 failures in a row open APNs's breaker: those answers wait for its probe (reason circuit_open).
        assert {(s["status"], s["reason"], s["provider_status"]) for s in apns} <= {
            ("retrying", "ServiceUnavailable", 503), ("retrying", "circuit_open", 503)}
        assert sorted(s["device_id"] for s in apns if s["attempt"] == 1) == sorted(f"{u}-ios" for u in users)


async def test_fcm_token_is_fetched_once_for_concurrent_sends(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    worker = start(stack, workers)
    users = [f"u-{i}" for i in range(60)]
    async with Kafka(stack.deployment) as kafka:
        await kafka.publish("pushstream.devices", [e for e in registrations(stack, users) if e["platform"] == "fcm"])
        wait_for(lambda: all(len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 1
                             for u in users), timeout=60, what="registrations")
        before = stack.fakes.stats()["fcm"]
        await kafka.publish("pushstream.notifications", [
            {"id": "n-1", "app_id": "demo", "title": "hello", "target": {"user_ids": users}}])
        statuses = await kafka.read_json("pushstream.status", until=lambda s: len(s) >= 60, settle=0.5)
        assert {s["status"] for s in statuses} == {"delivered"} and len(statuses) == 60
        after = stack.fakes.stats()["fcm"]
        assert after["token_requests"] - before.get("token_requests", 0) == 1
