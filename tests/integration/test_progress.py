"""Campaign progress end to end: a campaign to a known set of devices (some opted out, one dead token), the
progress document counts each device once by its latest status, and `pushstream notifications show` prints it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import OTHER_KEY, Kafka, Worker, make_stack, wait_for
from tests.integration.test_delivery import registrations

USERS = [f"u-{i}" for i in range(6)]


async def test_progress_counts_a_campaign_exactly_and_the_cli_prints_it(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    # Two workers: each owns half of the progress partitions, so one of them answers by forwarding to the other.
    workers += [Worker(stack.deployment, "w1").start(), Worker(stack.deployment, "w2").start()]
    for started in workers:
        started.wait_ready()
    worker, second = workers
    async with Kafka(stack.deployment) as kafka:
        # 6 users with APNs, FCM and Web Push each = 18 devices; u-4 opted out of marketing; u-5's FCM token is dead.
        await kafka.publish("pushstream.devices", registrations(stack, USERS))
        await kafka.publish("pushstream.preferences", [
            {"app_id": "demo", "user_id": "u-4", "channels": {"marketing": False}}])
        wait_for(lambda: all(len(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 3
                             for u in USERS), timeout=60, what="registrations")
        wait_for(lambda: worker.get("/v1/apps/demo/users/u-4/preferences").json()["preferences"].get("channels")
                 == {"marketing": False}, timeout=30, what="preferences")
        stack.fakes.unregister("fcm", "fcm-u-5")

        assert worker.get("/v1/apps/demo/notifications/camp-1").json()["error"] == "not_found"
        await kafka.publish("pushstream.notifications", [{
            "id": "camp-1", "app_id": "demo", "channel": "marketing", "priority": "normal",
            "target": {"user_ids": [*USERS, "u-nobody"]}, "title": "Sale", "body": "Everything must go"}])

        def progress() -> dict[str, Any] | None:
            answer = worker.get("/v1/apps/demo/notifications/camp-1")
            if answer.status_code != 200:
                return None
            body: dict[str, Any] = answer.json()
            return body if body["targeted"] == 18 and body["done"] else None

        wait_for(progress, timeout=90, what="campaign progress done")
        # Every status record (and its re-keyed batch) is processed: nothing may change the counts any more.
        await kafka.wait_drained(["pushstream.progress"])  # the status writers feed progress directly
        statuses = await kafka.read_json("pushstream.status", until=lambda s: len(s) >= 18)
        final = worker.get("/v1/apps/demo/notifications/camp-1")
        assert final.status_code == 200
        doc = final.json()
        print("progress:", orjson.dumps(doc).decode())
        assert {k: v for k, v in doc.items() if k not in ("first_at", "last_at")} == {
            "id": "camp-1", "app_id": "demo", "targeted": 18,
            "by_status": {"delivered": 14, "invalid_token": 1, "suppressed": 3},
            "suppressed_by_reason": {"opt_out": 3}, "pending": 0, "opened": 0, "open_rate": 0.0,
            "done": True, "variants": {},
        }
        ats = sorted(s["at"] for s in statuses if s["notification_id"] == "camp-1")
        assert (doc["first_at"], doc["last_at"]) == (ats[0], ats[-1])

        # Whichever worker is asked, the owner of the notification's partition answers.
        assert second.get("/v1/apps/demo/notifications/camp-1").json() == doc
        assert second.get("/v1/apps/demo/notifications/nope").status_code == 404

        # Auth exactly like the other /v1 routes, and JSON errors.
        assert worker.get("/v1/apps/demo/notifications/camp-1", api_key=None).status_code == 401
        assert worker.get("/v1/apps/demo/notifications/camp-1", api_key=OTHER_KEY).status_code == 403
        missing = worker.get("/v1/apps/demo/notifications/nope")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        # Another app cannot see it under its own id either.
        other = worker.get("/v1/apps/other/notifications/camp-1", api_key=OTHER_KEY)
        assert other.status_code == 404

        shown = stack.deployment.cli("notifications", "show", "camp-1", "--app", "demo", "--url", second.url)
        assert orjson.loads(shown.stdout) == doc
        assert '\n  "by_status": {\n    "delivered": 14,' in shown.stdout  # pretty-printed
        unknown = stack.deployment.cli("notifications", "show", "nope", "--app", "demo", "--url", worker.url,
                                       check=False)
        assert unknown.returncode == 1 and "404 not_found" in unknown.stderr
