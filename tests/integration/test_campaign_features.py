"""Local-time sends, open tracking and per-app hooks end to end, with one real worker and the fake providers.

- a `send_at_local` send lands in three zones at their local time (Pacific/Auckland and Pacific/Tongatapu at
  +13, Pacific/Pago_Pago at -11: the same wall-clock time on two different dates, one real instant, so the test
  needs no fake clock), while a Berlin user waits in the schedule for Berlin's time;
- opens posted for 10 devices (each twice, plus bad events) show as `opened: 10` in progress;
- a pre-send hook that drops one user and raises for another: `suppressed`/`vip_quiet`, `dead_lettered`/
  `hook_error` with a dead letter, everyone else delivered with the hook's UTM data; a post-send hook gets
  every settled outcome once, in batches.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import orjson
import pytest

from pushstream.rules.localtime import wall_clock
from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.hooks import OUTCOMES_FILE_ENV
from pushstream.testing.stack import dev_app_config
from tests.integration.harness import DEMO_KEY, OTHER_KEY, Kafka, Stack, Worker, make_deployment, wait_for

ZONES = {"u-akl": "Pacific/Auckland", "u-tbu": "Pacific/Tongatapu", "u-ppg": "Pacific/Pago_Pago"}
OPENERS = [f"o-{i}" for i in range(5)]  # 5 users x 2 devices = 10 devices


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse(at: str) -> dt.datetime:
    return dt.datetime.fromisoformat(at.replace("Z", "+00:00"))


def fcm(user: str, device: str, **extra: Any) -> dict[str, Any]:
    return {"type": "register", "app_id": "demo", "user_id": user, "device_id": device, "platform": "fcm",
            "token": f"fcm-{user}-{device}", **extra}


async def test_local_time_opens_and_hooks(tmp_path: Path, fakes: FakesProcess, workers: list[Worker],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    client = fakes.client
    assert client is not None
    setup = client.setup()
    outcomes_file = tmp_path / "post_send.jsonl"
    monkeypatch.setenv(OUTCOMES_FILE_ENV, str(outcomes_file))  # the worker inherits it
    demo = {**dev_app_config(setup, [DEMO_KEY]),
            "hooks": {"pre_send": "pushstream.testing.hooks:drop_or_raise",
                      "post_send": "pushstream.testing.hooks:outcomes_to_file", "budget_seconds": 0.5}}
    deployment = make_deployment(tmp_path / "d", apps={"demo": demo, "other": {"api_keys": [OTHER_KEY]}})
    stack = Stack(deployment=deployment, fakes=client, setup=setup)
    worker = Worker(deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()

    async with Kafka(deployment) as kafka:
        devices = [fcm("u-akl", "d-1", timezone="Pacific/Auckland"),
                   fcm("u-tbu", "d-1", timezone="Europe/Berlin"),  # the preference's zone wins over the device's
                   fcm("u-ppg", "d-1", timezone="Pacific/Pago_Pago"),
                   fcm("u-ber", "d-1", timezone="Europe/Berlin"),
                   *[fcm(u, d) for u in OPENERS for d in ("d-1", "d-2")],
                   fcm("h-quiet", "d-1", tags=["vip_quiet"]), fcm("h-boom", "d-1", tags=["explode"]),
                   *[fcm(f"h-{i}", "d-1") for i in range(3)]]
        await kafka.publish("pushstream.devices", devices, key=lambda v: v["user_id"])
        await kafka.publish("pushstream.preferences", [
            {"app_id": "demo", "user_id": "u-tbu", "timezone": "Pacific/Tongatapu"}])
        wait_for(lambda: worker.get("/v1/apps/demo/users/u-tbu/preferences").json()["preferences"]
                 .get("timezone") == "Pacific/Tongatapu", timeout=60, what="preferences")
        wait_for(lambda: all(worker.get(f"/v1/apps/demo/users/{d['user_id']}/devices").json()["devices"]
                             for d in devices), timeout=60, what="registrations")

        # --- local time: the next whole minute at least 60 s ahead, as Auckland's clocks will show it.
        due = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)).replace(second=0, microsecond=0)
        local = due.astimezone(zoneinfo.ZoneInfo("Pacific/Auckland")).strftime("%H:%M")
        answer = worker.post("/v1/apps/demo/notifications", {
            "id": "local-1", "title": "Good morning", "send_at_local": local,
            "target": {"user_ids": [*ZONES, "u-ber"]}})
        assert answer.status_code == 202, answer.text

        # --- hooks: a marketing broadcast to the h-* users (the others are not tagged: they get it too).
        await kafka.publish("pushstream.notifications", [{
            "id": "promo-1", "app_id": "demo", "channel": "marketing", "title": "Sale", "data": {"sku": "7"},
            "target": {"user_ids": ["h-quiet", "h-boom", "h-0", "h-1", "h-2"]}}])
        # --- opens: a transactional send to 10 devices.
        await kafka.publish("pushstream.notifications", [{
            "id": "open-1", "app_id": "demo", "title": "Hello", "target": {"user_ids": OPENERS}}])

        def of(statuses: list[dict[str, Any]], nid: str) -> dict[tuple[str, str], tuple[str, str | None]]:
            return {(s["user_id"], s["device_id"]): (s["status"], s["reason"]) for s in statuses
                    if s["notification_id"] == nid}

        statuses = await kafka.read_json("pushstream.status", timeout=120,
                                         until=lambda s: len(of(s, "open-1")) == 10 and len(of(s, "promo-1")) == 5)
        assert set(of(statuses, "open-1").values()) == {("delivered", None)}
        assert of(statuses, "promo-1") == {
            ("h-quiet", "d-1"): ("suppressed", "vip_quiet"), ("h-boom", "d-1"): ("dead_lettered", "hook_error"),
            ("h-0", "d-1"): ("delivered", None), ("h-1", "d-1"): ("delivered", None),
            ("h-2", "d-1"): ("delivered", None)}
        letters = await kafka.read_json("pushstream.dlq", timeout=30,
                                        until=lambda ls: any(x["reason"] == "hook_error" for x in ls))
        assert [x["reason"] for x in letters] == ["hook_error"]
        promo = [r for r in stack.fakes.requests("fcm") if r["key"].startswith("fcm-h-")]
        assert sorted(r["key"] for r in promo) == ["fcm-h-0-d-1", "fcm-h-1-d-1", "fcm-h-2-d-1"]
        for request in promo:  # the hook's adjustment reached the provider
            data = orjson.loads(request["body"])["message"]["data"]
            assert data == {"sku": "7", "utm_source": "push", "utm_campaign": "promo-1"}, data
        metrics = worker.get("/metrics", api_key=None).text
        assert 'pushstream_hook_errors_total{app_id="demo",hook="pre_send"} 1.0' in metrics

        # Opens: every device twice (one by Kafka, one by HTTP), plus bad events that go nowhere but the DLQ.
        opens = [{"type": "opened", "app_id": "demo", "notification_id": "open-1", "user_id": u, "device_id": d,
                  "at": iso(dt.datetime.now(dt.UTC))} for u in OPENERS for d in ("d-1", "d-2")]
        await kafka.publish("pushstream.engagement", [*opens, {**opens[0], "type": "clicked"}, b"{not json"],
                            key=lambda v: v["user_id"] if isinstance(v, dict) else None)
        for event in opens:
            body = {k: v for k, v in event.items() if k != "app_id"}
            assert worker.post("/v1/apps/demo/events", body).status_code == 202
        assert worker.post("/v1/apps/demo/events", {**opens[0], "at": "soon"}).status_code == 400
        assert worker.post("/v1/apps/demo/events", opens[0], api_key=OTHER_KEY).status_code == 403

        def progress() -> dict[str, Any] | None:
            doc: dict[str, Any] = worker.get("/v1/apps/demo/notifications/open-1").json()
            return doc if doc.get("opened") == 10 else None

        doc = wait_for(progress, timeout=60, what="10 opens in progress")
        await kafka.wait_drained(["pushstream.engagement", "pushstream.progress"])
        doc = worker.get("/v1/apps/demo/notifications/open-1").json()
        assert (doc["opened"], doc["open_rate"], doc["by_status"]) == (10, 1.0, {"delivered": 10})
        letters = await kafka.read_json("pushstream.dlq", timeout=30, until=lambda ls: len(ls) >= 3)
        assert sorted(x["reason"] for x in letters) == ["bad_field", "bad_json", "hook_error"]

        # Local time: delivered in the three zones at the same instant, their own HH:MM; Berlin still waits.
        statuses = await kafka.read_json("pushstream.status", timeout=240,
                                         until=lambda s: len(of(s, "local-1")) == 3)
        arrived = of(statuses, "local-1")
        assert set(arrived) == {(u, "d-1") for u in ZONES}
        assert set(arrived.values()) == {("delivered", None)}
        for s in statuses:
            if s["notification_id"] == "local-1":
                shown = parse(s["at"]).astimezone(zoneinfo.ZoneInfo(ZONES[s["user_id"]]))
                assert shown.strftime("%H:%M") == local, (s, shown)
        local_sends = [r for r in stack.fakes.requests("fcm") if r["key"].startswith("fcm-u-")]
        assert sorted(r["key"] for r in local_sends) == sorted(f"fcm-{u}-d-1" for u in ZONES)
        def adds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [c for record in records for c in record.get("commands", []) if c.get("op") == "add"
                    and c["intent"]["notification"]["id"] == "local-1"]

        commands = adds(await kafka.read_json("pushstream.schedule", timeout=30, until=lambda r: len(adds(r)) >= 4))
        by_zone = {c["intent"]["notification"]["local_zone"]: c for c in commands}
        assert set(by_zone) == {*ZONES.values(), "Europe/Berlin"}
        berlin = zoneinfo.ZoneInfo("Europe/Berlin")
        hhmm = dt.time.fromisoformat(local)
        expected = wall_clock(berlin, due.astimezone(berlin).date(), hhmm)
        if expected <= due:
            expected = wall_clock(berlin, due.astimezone(berlin).date() + dt.timedelta(days=1), hhmm)
        assert by_zone["Europe/Berlin"]["due"] == expected.timestamp()
        assert by_zone["Europe/Berlin"]["intent"]["user_ids"] == ["u-ber"]
        assert by_zone["Pacific/Auckland"]["due"] == due.timestamp()

        # post_send got every outcome the senders settled, each exactly once, in batches (one call per poll).
        def sent_outcomes() -> list[list[dict[str, Any]]]:
            lines = outcomes_file.read_bytes().splitlines() if outcomes_file.exists() else []
            return [orjson.loads(line) for line in lines]

        calls = wait_for(lambda: (c := sent_outcomes()) and sum(map(len, c)) >= 16 and c, timeout=30,
                         what="post_send outcomes")
        seen = sorted((o["notification_id"], o["user_id"], o["device_id"], o["status"]) for c in calls for o in c)
        assert len(seen) == 16 and {s[3] for s in seen} == {"delivered"}
        assert {s[0] for s in seen} == {"local-1", "promo-1", "open-1"}
        assert len(calls) < 16  # batched: fewer calls than outcomes
