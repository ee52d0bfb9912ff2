"""Campaign features with real workers, Kafka and the fake providers: cancel (scheduled, mid-broadcast, before
the notification, after delivery), A/B variants and previews to test devices, and the audit trail."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from pushstream.rules.audit import key_fingerprint
from pushstream.rules.variants import assign_variant
from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import DEMO_KEY, OTHER_KEY, Kafka, Stack, Worker, make_stack, wait_for

AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}


def fcm_devices(users: list[str], tags: list[str] | None = None) -> list[dict[str, Any]]:
    return [{"type": "register", "app_id": "demo", "user_id": u, "device_id": f"{u}-android", "platform": "fcm",
             "token": f"fcm-{u}", **({"tags": tags} if tags else {})} for u in users]


def set_pipeline(stack: Stack, **pipeline: Any) -> None:
    path = stack.deployment.config_path
    config = yaml.safe_load(path.read_text())
    config["pipeline"].update(pipeline)
    path.write_text(yaml.safe_dump(config))


def sent_titles(stack: Stack) -> Counter[str]:
    return Counter((r.get("json") or {}).get("message", {}).get("notification", {}).get("title", "")
                   for r in stack.fakes.requests("fcm") if r["path"].endswith(":send"))


def of(statuses: list[dict[str, Any]], nid: str) -> list[dict[str, Any]]:
    return [s for s in statuses if s["notification_id"] == nid]


async def wait_registered(worker: Worker, user: str) -> None:
    wait_for(lambda: len(worker.get(f"/v1/apps/demo/users/{user}/devices").json()["devices"]) == 1,
             timeout=90, what=f"{user} registered")


async def test_cancel_at_every_stage(tmp_path: Path, fakes: FakesProcess, workers: list[Worker]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    # Small broadcast steps: the cancel takes effect at the next step, well before the broadcast is routed.
    set_pipeline(stack, broadcast_step_users=2)
    worker = Worker(stack.deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready(timeout=180)  # start-up on a loaded machine (6 engineers on 2 cores)
    users = [f"u-{i:04d}" for i in range(1200)]
    async with Kafka(stack.deployment) as kafka:
        await kafka.publish("pushstream.devices", fcm_devices(users), key=lambda v: v["user_id"])
        for user in (users[0], users[-1]):
            await wait_registered(worker, user)

        # Delivered, then cancelled: nothing changes.
        await kafka.publish("pushstream.notifications", [{"id": "done", "app_id": "demo", "title": "done",
                                                          "target": {"user_ids": users[:2]}}])
        await kafka.read_json("pushstream.status", timeout=60,
                              until=lambda s: len([x for x in of(s, "done") if x["status"] == "delivered"]) == 2)
        answer = httpx.delete(f"{worker.url}/v1/apps/demo/notifications/done", headers=AUTH, timeout=10)
        assert answer.status_code == 202 and answer.json()["cancel"] == "accepted"
        assert answer.headers["X-Request-Id"]
        url = f"{worker.url}/v1/apps/demo/notifications/done"
        assert httpx.delete(url, timeout=10).status_code == 401
        assert httpx.delete(url, headers={"Authorization": f"Bearer {OTHER_KEY}"}, timeout=10).status_code == 403

        # Cancelled before it arrives: the routers remember the cancel.
        await kafka.publish("pushstream.notifications", [{"type": "cancel", "app_id": "demo", "id": "early"}])
        # Scheduled, then cancelled over HTTP.
        send_at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)).isoformat().replace("+00:00", "Z")
        posted = httpx.post(f"{worker.url}/v1/apps/demo/notifications", headers=AUTH, timeout=10,
                            content=orjson.dumps({"id": "sched", "title": "sched", "send_at": send_at,
                                                  "target": {"user_ids": users[:3]}}))
        assert posted.status_code == 202
        assert httpx.delete(f"{worker.url}/v1/apps/demo/notifications/sched", headers=AUTH,
                            timeout=10).status_code == 202

        def early_cancels(records: list[Any]) -> int:
            intents = [orjson.loads(r.value) for r in records]
            return sum(1 for i in intents if i.get("cancel") and i["notification"]["id"] == "early")

        # The cancel is planned onto every partition's intents: the notification's intents queue behind it.
        await kafka.read("pushstream.intents", timeout=30, until=lambda rs: early_cancels(rs) == 4)
        await kafka.publish("pushstream.notifications", [{"id": "early", "app_id": "demo", "title": "early",
                                                          "target": {"user_ids": users[:2]}}])

        # A broadcast cancelled while it is routed.
        await kafka.publish("pushstream.notifications", [{"id": "camp", "app_id": "demo", "channel": "marketing",
                                                          "title": "camp", "target": {"all": True}}])
        wait_for(lambda: sent_titles(stack)["camp"] > 0, timeout=60, interval=0.05, what="the campaign sending")
        await kafka.publish("pushstream.notifications", [{"type": "cancel", "app_id": "demo", "id": "camp"}])

        def camp_final(statuses: list[dict[str, Any]]) -> bool:
            return len({s["device_id"] for s in of(statuses, "camp") if s["status"] != "retrying"}) == len(users)

        statuses = await kafka.read_json(
            "pushstream.status", timeout=120, settle=2.0,
            until=lambda s: camp_final(s) and len(of(s, "sched")) == 3 and len(of(s, "early")) == 2)
    camp = Counter((s["status"], s["reason"]) for s in of(statuses, "camp"))
    delivered, cancelled = camp[("delivered", None)], camp[("suppressed", "cancelled")]
    print(f"broadcast of {len(users)}: delivered {delivered}, cancelled {cancelled}, all {dict(camp)}")
    assert delivered > 0 and cancelled > 0, camp  # stopped part-way
    assert delivered + cancelled == len(users) == len({s["device_id"] for s in of(statuses, "camp")})
    assert set(camp) <= {("delivered", None), ("suppressed", "cancelled")}
    assert [(s["status"], s["reason"]) for s in of(statuses, "sched")] == [("suppressed", "cancelled")] * 3
    assert [(s["status"], s["reason"]) for s in of(statuses, "early")] == [("suppressed", "cancelled")] * 2
    assert [s["status"] for s in of(statuses, "done")] == ["delivered"] * 2  # no new record after its cancel
    titles = sent_titles(stack)
    assert titles["sched"] == 0 and titles["early"] == 0  # never reached the provider
    assert titles["camp"] == delivered and titles["done"] == 2
    wait_for(lambda: worker.get("/v1/apps/demo/notifications/camp").json().get("done"), timeout=60,
             what="campaign progress done")
    progress = worker.get("/v1/apps/demo/notifications/camp").json()
    assert progress["by_status"] == {"delivered": delivered, "suppressed": cancelled}
    assert progress["suppressed_by_reason"] == {"cancelled": cancelled}


async def test_variants_preview_and_audit(tmp_path: Path, fakes: FakesProcess, workers: list[Worker]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    worker = Worker(stack.deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready(timeout=180)  # start-up on a loaded machine (6 engineers on 2 cores)
    users = [f"v-{i:04d}" for i in range(1000)]
    testers = ["t-1", "t-2", "t-3"]
    variants = [{"id": "a", "weight": 70, "title": "A title"}, {"id": "b", "weight": 30, "title": "B title"}]
    async with Kafka(stack.deployment) as kafka:
        await kafka.publish("pushstream.devices", fcm_devices(users) + fcm_devices(testers, ["test", "beta"]),
                            key=lambda v: v["user_id"])
        for user in (users[0], users[-1], testers[-1]):
            await wait_registered(worker, user)
        posted = httpx.post(f"{worker.url}/v1/apps/demo/notifications", timeout=10,
                            headers={**AUTH, "User-Agent": "campaign-test/1.0"},
                            content=orjson.dumps({"id": "ab", "channel": "marketing", "target": {"all": True},
                                                  "variants": variants}))
        assert posted.status_code == 202, posted.text
        await kafka.publish("pushstream.notifications", [{"id": "preview", "app_id": "demo", "title": "preview",
                                                          "target": {"test_devices": True}}])
        everyone = users + testers
        statuses = await kafka.read_json(
            "pushstream.status", timeout=120, settle=1.0,
            until=lambda s: len(of(s, "ab")) >= len(everyone) and len(of(s, "preview")) >= 3)
        audits = await kafka.read("pushstream.audit", timeout=30, settle=2.0, until=lambda rs: len(rs) >= 2)

    preview = of(statuses, "preview")
    assert sorted((s["user_id"], s["status"]) for s in preview) == [(t, "delivered") for t in testers]
    ab = of(statuses, "ab")
    assert len(ab) == len(everyone) and {s["status"] for s in ab} == {"delivered"}
    assert all(s["variant"] == assign_variant("ab", s["user_id"], variants) for s in ab)
    split = Counter(s["variant"] for s in ab)
    print(f"variants over {len(everyone)} users: {dict(split)}")
    assert abs(split["a"] / len(everyone) - 0.70) <= 0.05 and abs(split["b"] / len(everyone) - 0.30) <= 0.05
    titles = sent_titles(stack)
    assert titles["A title"] == split["a"] and titles["B title"] == split["b"] and titles["preview"] == 3

    def progress() -> dict[str, Any]:
        return worker.get("/v1/apps/demo/notifications/ab").json()

    wait_for(lambda: progress().get("done"), timeout=60, what="campaign progress done")
    assert progress()["variants"] == {"a": {"targeted": split["a"], "delivered": split["a"], "opened": 0},
                                      "b": {"targeted": split["b"], "delivered": split["b"], "opened": 0}}
    # Opens count in the variant of the user that opened: 5 devices of variant a, 3 of b, each posted twice.
    openers = ([s for s in ab if s["variant"] == "a"][:5] + [s for s in ab if s["variant"] == "b"][:3])
    for s in openers * 2:
        event = {"type": "opened", "notification_id": "ab", "user_id": s["user_id"], "device_id": s["device_id"],
                 "at": s["at"]}
        assert worker.post("/v1/apps/demo/events", event).status_code == 202
    wait_for(lambda: progress().get("opened") == 8, timeout=60, what="8 opens in progress")
    assert {v: c["opened"] for v, c in progress()["variants"].items()} == {"a": 5, "b": 3}

    # One audit record per request, HTTP and Kafka, and no secret in any.
    assert len(audits) == 2
    assert all(DEMO_KEY.encode() not in r.value for r in audits)
    by_id = {orjson.loads(r.value)["notification_id"]: orjson.loads(r.value) for r in audits}
    http, kafka_record = by_id["ab"], by_id["preview"]
    assert http["via"] == "http" and http["key_id"] == key_fingerprint(DEMO_KEY)
    assert http["remote"] == "127.0.0.1" and http["user_agent"] == "campaign-test/1.0"
    assert http["request_id"] == posted.headers["X-Request-Id"] and http["target"] == {"all": True}
    assert kafka_record["via"] == "kafka" and kafka_record["target"] == {"test_devices": True}
    assert "key_id" not in kafka_record and kafka_record["at"].endswith("Z")
