"""End to end up to the provider boundary: registrations and preferences from a producer with random
partitioning, a notification, exact delivery records per platform, suppressed statuses, table views from
both of two workers."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from pushstream.testing.fakes.credentials import b64url, generate_dev_setup
from tests.integration.harness import DEMO_KEY, OTHER_KEY, Deployment, Kafka, Worker, make_deployment, wait_for

APNS_TOKEN = "a0" * 32


P256DH = b64url(b"\x04" + bytes(range(64)))
AUTH = b64url(bytes(range(16)))


def device_events(users: list[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i, user in enumerate(users):
        events.append({"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-ios",
                       "platform": "apns", "token": f"{i:02x}" * 32, "locale": "de-DE" if i % 2 else "en-US"})
        events.append({"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-android",
                       "platform": "fcm", "token": f"fcm-{user}"})
        events.append({"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-web",
                       "platform": "webpush", "subscription": {
                           "endpoint": f"https://push.example.org/sub/{user}",
                           "keys": {"p256dh": P256DH, "auth": AUTH}}})
    return events


def configured_apps(root: Any) -> dict[str, Any]:
    """Real keys (the worker parses every key file at start-up); the provider endpoints point at a closed
    local port. The tests using it stop at the delivery topics and run router-only workers: no sender sends."""
    setup = generate_dev_setup(root / "keys", apns_port=9, fcm_port=9, webpush_port=9)
    return {
        "demo": {
            "api_keys": [DEMO_KEY],
            "apns": {"key_file": str(setup.apns_key_file), "key_id": "KEY1234567", "team_id": "TEAM123456",
                     "topic": "com.example.app", "endpoint": "https://127.0.0.1:9"},
            "fcm": {"credentials_file": str(setup.fcm_service_account_file), "project_id": "demo-project",
                    "endpoint": "http://127.0.0.1:9"},
            "webpush": {"vapid_private_key_file": str(setup.vapid_private_key_file),
                        "vapid_subject": "mailto:ops@example.com", "allowed_endpoint_hosts": ["push.example.org"]},
        },
        "other": {"api_keys": [OTHER_KEY]},
    }


async def test_fanout_to_platform_topics_with_two_workers(tmp_path: Any, workers: list[Worker]) -> None:
    root = tmp_path / "d"
    root.mkdir()
    deployment: Deployment = make_deployment(root, apps=configured_apps(root))
    workers += [Worker(deployment, "w1", role="router").start(), Worker(deployment, "w2", role="router").start()]
    for worker in workers:
        worker.wait_ready()
    users = [f"u-{i}" for i in range(8)]
    async with Kafka(deployment) as kafka:
        await kafka.publish("pushstream.devices", device_events(users), key=lambda v: v["user_id"])
        # u-3 opted out of the category; u-5 out of marketing (which a transactional message ignores).
        await kafka.publish("pushstream.preferences", [
            {"app_id": "demo", "user_id": "u-3", "categories": {"order_shipped": False}},
            {"app_id": "demo", "user_id": "u-5", "channels": {"marketing": False}},
        ])
        # Both workers must answer for every user: each routes to the partition owner.
        seen: dict[str, str] = {}

        def has_devices(worker: Worker, user: str) -> bool:
            response = worker.get(f"/v1/apps/demo/users/{user}/devices")
            seen[worker.name] = f"{response.status_code} {response.text[:300]}"
            return response.status_code == 200 and len(response.json()["devices"]) == 3

        for worker in workers:
            for user in users:
                try:
                    wait_for(functools.partial(has_devices, worker, user), timeout=60,
                             what=f"{user}'s devices via {worker.name}")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; last answer: {seen[worker.name]}") from None
        for worker in workers:
            prefs = worker.get("/v1/apps/demo/users/u-3/preferences").json()["preferences"]
            assert prefs["categories"] == {"order_shipped": False}
            view = worker.get("/v1/apps/demo/users/u-1/devices").json()
            ios = next(d for d in view["devices"] if d["device_id"] == "u-1-ios")
            assert ios["status"] == "active" and ios["locale"] == "de-DE"
            assert "token" not in ios and len(ios["fingerprint"]) == 16
            assert APNS_TOKEN not in orjson.dumps(view).decode()
            assert worker.get("/v1/apps/demo/users/u-1/devices", api_key=None).status_code == 401
            assert worker.get("/v1/apps/demo/users/u-1/devices", api_key=OTHER_KEY).status_code == 403

        notification = {
            "id": "n-42", "app_id": "demo", "channel": "transactional", "category": "order_shipped",
            "priority": "high", "target": {"user_ids": users}, "title": "Your order shipped",
            "body": "Arrives Tuesday", "data": {"order_id": 42},
            "localized": {"de": {"title": "Bestellung versandt", "body": "Ankunft Dienstag"}},
            "ttl": 3600, "collapse_key": "order-42",
        }
        await kafka.publish("pushstream.notifications", [notification], key=lambda v: v["id"])
        delivered = [u for u in users if u != "u-3"]

        def items(topic: str, expected: int) -> list[dict[str, Any]]:
            async def read() -> list[dict[str, Any]]:
                batches = await kafka.read_json(
                    topic, until=lambda bs: sum(len(b["items"]) for b in bs) >= expected, settle=1.0)
                # Items share their batch's payloads (models.internal.share_payloads): give each its own again.
                return [dict(item, batch=batch, payload=batch["payloads"][item["p"]]) if "p" in item else
                        dict(item, batch=batch) for batch in batches for item in batch["items"]]
            return read  # type: ignore[return-value]

        apns = await items("pushstream.deliveries.apns", len(delivered))()  # type: ignore[operator]
        fcm = await items("pushstream.deliveries.fcm", len(delivered))()  # type: ignore[operator]
        web = await items("pushstream.deliveries.webpush", len(delivered))()  # type: ignore[operator]
        for platform_items in (apns, fcm, web):
            assert sorted(i["user_id"] for i in platform_items) == sorted(delivered)
            for item in platform_items:
                batch = item["batch"]
                assert (batch["notification_id"], batch["app_id"], batch["channel"], batch["priority"]) == (
                    "n-42", "demo", "transactional", "high")
                assert batch["collapse_key"] == "order-42"
        by_user = {i["user_id"]: i for i in apns}
        assert by_user["u-1"]["payload"] == {
            "aps": {"alert": {"title": "Bestellung versandt", "body": "Ankunft Dienstag"}, "thread-id": "order-42"},
            "order_id": 42,
        }
        assert by_user["u-0"]["payload"]["aps"]["alert"] == {"title": "Your order shipped", "body": "Arrives Tuesday"}
        assert by_user["u-0"]["token"] == "00" * 32
        fcm_u0 = next(i for i in fcm if i["user_id"] == "u-0")
        assert fcm_u0["token"] == "fcm-u-0"
        assert fcm_u0["payload"]["data"] == {"order_id": "42"}
        assert fcm_u0["payload"]["android"] == {"priority": "HIGH", "ttl": "3600s", "collapse_key": "order-42"}
        web_u0 = next(i for i in web if i["user_id"] == "u-0")
        assert web_u0["subscription"]["endpoint"] == "https://push.example.org/sub/u-0"
        assert web_u0["payload"] == {"id": "n-42", "title": "Your order shipped", "body": "Arrives Tuesday",
                                     "data": {"order_id": 42}, "tag": "order-42"}
        # Nothing for the marketing lane.
        statuses = await kafka.read_json("pushstream.status", until=lambda s: len(s) >= 3, settle=1.0)
        assert sorted((s["user_id"], s["device_id"], s["status"], s["reason"]) for s in statuses) == [
            ("u-3", f"u-3-{kind}", "suppressed", "opt_out") for kind in ("android", "ios", "web")
        ]
        assert all(s["notification_id"] == "n-42" and s["app_id"] == "demo" for s in statuses)


async def test_segment_and_broadcast_scan_every_partition(tmp_path: Any, workers: list[Worker]) -> None:
    root = tmp_path / "d"
    root.mkdir()
    deployment = make_deployment(root, apps=configured_apps(root))
    workers.append(Worker(deployment, "w1", role="router").start())
    workers[0].wait_ready()
    users = [f"u-{i}" for i in range(20)]
    events = device_events(users)
    for event in events:
        if event["platform"] == "apns":
            event["app_version"] = "6.4.1" if int(event["user_id"][2:]) % 2 else "5.9"
            event["tags"] = ["beta"] if int(event["user_id"][2:]) % 4 == 1 else []
    async with Kafka(deployment) as kafka:
        await kafka.publish("pushstream.devices", events)
        wait_for(lambda: all(len(workers[0].get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 3
                             for u in users), timeout=60, what="all registrations")
        await kafka.publish("pushstream.notifications", [
            {"id": "seg", "app_id": "demo", "channel": "marketing", "title": "beta news",
             "target": {"segment": {"platforms": ["apns"], "tags_any": ["beta"], "app_version_gte": "6.0"}}},
            {"id": "all", "app_id": "demo", "channel": "marketing", "title": "everyone", "target": {"all": True}},
            # Another app's broadcast reaches none of demo's devices.
            {"id": "other", "app_id": "other", "title": "x", "target": {"all": True}},
        ])
        bulk = await kafka.read_json(
            "pushstream.deliveries.apns.bulk",
            until=lambda bs: sum(len(b["items"]) for b in bs if b["notification_id"] == "all") >= 20, settle=1.0)
        segment_users = sorted(i["user_id"] for b in bulk if b["notification_id"] == "seg" for i in b["items"])
        assert segment_users == sorted(u for u in users if int(u[2:]) % 4 == 1)
        everyone = sorted(i["user_id"] for b in bulk if b["notification_id"] == "all" for i in b["items"])
        assert everyone == sorted(users)
        assert not [b for b in bulk if b["notification_id"] == "other"]
        web = await kafka.read_json("pushstream.deliveries.webpush.bulk",
                                    until=lambda bs: sum(len(b["items"]) for b in bs) >= 20, settle=0.5)
        assert sorted(i["user_id"] for b in web for i in b["items"]) == sorted(users)
