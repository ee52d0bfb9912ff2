"""Scheduling: send_at in the future waits in the schedule table; marketing in quiet hours is deferred to
their end and then delivered; transactional messages are never deferred."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import Kafka, Worker, make_stack, wait_for


def parse(at: str) -> dt.datetime:
    return dt.datetime.fromisoformat(at.replace("Z", "+00:00"))


async def test_send_at_and_quiet_hours(tmp_path: Path, fakes: FakesProcess, workers: list[Worker]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    worker = Worker(stack.deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    now = dt.datetime.now(dt.UTC)
    # Quiet hours are whole minutes: end at the first minute boundary at least 40 s away, so the OTP (sent within
    # seconds) is surely answered inside the quiet window even when the test starts at :59.
    quiet_end = (now + dt.timedelta(seconds=40 + 60)).replace(second=0, microsecond=0)
    async with Kafka(stack.deployment) as kafka:
        await kafka.publish("pushstream.devices", [
            {"type": "register", "app_id": "demo", "user_id": u, "device_id": f"{u}-android", "platform": "fcm",
             "token": f"fcm-{u}"} for u in ("sleepy", "awake")])
        # Quiet from this minute to `quiet_end`, in UTC: marketing waits until then.
        await kafka.publish("pushstream.preferences", [{
            "app_id": "demo", "user_id": "sleepy", "timezone": "UTC",
            "quiet_hours": {"start": now.strftime("%H:%M"), "end": quiet_end.strftime("%H:%M")}}])
        wait_for(lambda: worker.get("/v1/apps/demo/users/sleepy/preferences").json()["preferences"]
                 .get("quiet_hours") is not None, timeout=30, what="preferences")
        wait_for(lambda: len(worker.get("/v1/apps/demo/users/awake/devices").json()["devices"]) == 1,
                 timeout=30, what="registrations")
        send_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
        await kafka.publish("pushstream.notifications", [
            {"id": "promo", "app_id": "demo", "channel": "marketing", "title": "sale",
             "target": {"user_ids": ["sleepy", "awake"]}},
            {"id": "otp", "app_id": "demo", "channel": "transactional", "title": "code 123",
             "target": {"user_ids": ["sleepy"]}},
            {"id": "later", "app_id": "demo", "title": "scheduled", "target": {"user_ids": ["awake"]},
             "send_at": send_at.isoformat().replace("+00:00", "Z")},
        ])

        def outcome(statuses: list[dict[str, Any]], nid: str, user: str) -> list[tuple[str, str | None]]:
            return [(s["status"], s["reason"]) for s in statuses if s["notification_id"] == nid
                    and s["user_id"] == user]

        statuses = await kafka.read_json(
            "pushstream.status", timeout=150,
            until=lambda s: outcome(s, "promo", "sleepy") == [("deferred", "quiet_hours"), ("delivered", None)]
            and bool(outcome(s, "later", "awake")))
        by = {(s["notification_id"], s["user_id"], s["status"]): s for s in statuses}
        assert outcome(statuses, "promo", "awake") == [("delivered", None)]
        assert outcome(statuses, "otp", "sleepy") == [("delivered", None)]
        assert parse(by[("promo", "sleepy", "delivered")]["at"]) >= quiet_end
        assert parse(by[("otp", "sleepy", "delivered")]["at"]) < quiet_end
        assert outcome(statuses, "later", "awake") == [("delivered", None)]
        assert parse(by[("later", "awake", "delivered")]["at"]) >= send_at
        # Exactly one provider request per delivered status: nothing was sent early or twice.
        fcm = [r for r in stack.fakes.requests("fcm") if r["path"].endswith(":send")]
        assert sorted(r["key"] for r in fcm) == ["fcm-awake", "fcm-awake", "fcm-sleepy", "fcm-sleepy"]
