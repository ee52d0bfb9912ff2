"""The read-only /ui page in headless Chromium: each lookup (a user's devices and preferences, a notification's
progress, DLQ counts) shows what the API holds, as text, with the key typed into the page."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.browser import Browser
from tests.integration.harness import DEMO_KEY, OTHER_KEY, Kafka, Worker, make_stack, wait_for

HOSTILE_TAG = '<img src=x onerror="window.pwned=1">'


async def test_ui_page_shows_devices_preferences_progress_and_dead_letters(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    worker = Worker(stack.deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    async with Kafka(stack.deployment) as kafka:
        await kafka.publish("pushstream.devices", [
            {"type": "register", "app_id": "demo", "user_id": "u-ui", "device_id": "phone", "platform": "fcm",
             "token": "fcm-ui", "locale": "de-DE", "tags": ["beta", HOSTILE_TAG]},
            {"type": "register", "app_id": "demo", "user_id": "u-ui", "device_id": "laptop", "platform": "webpush",
             "subscription": stack.subscription("web-ui")},
        ])
        await kafka.publish("pushstream.preferences", [
            {"app_id": "demo", "user_id": "u-ui", "channels": {"marketing": False},
             "quiet_hours": {"start": "22:00", "end": "07:00"}, "timezone": "Europe/Berlin"}])
        # Dead letters of demo (two without a user id, one of an unknown platform) and one of no app at all.
        await kafka.publish("pushstream.devices", [
            {"type": "register", "app_id": "demo", "device_id": "d", "platform": "fcm", "token": "t"},
            {"type": "register", "app_id": "demo", "device_id": "e", "platform": "fcm", "token": "t"},
            {"type": "register", "app_id": "demo", "user_id": "x", "device_id": "d", "platform": "pager",
             "token": "t"},
            b"{not json",
        ])
        wait_for(lambda: len(worker.get("/v1/apps/demo/users/u-ui/devices").json()["devices"]) == 2
                 and worker.get("/v1/apps/demo/users/u-ui/preferences").json()["preferences"].get("timezone"),
                 timeout=60, what="registrations")
        await kafka.publish("pushstream.notifications", [{
            "id": "n-ui", "app_id": "demo", "channel": "transactional", "title": "Hello",
            "target": {"user_ids": ["u-ui"]}}])
        wait_for(lambda: worker.get("/v1/apps/demo/notifications/n-ui").json().get("done"), timeout=60,
                 what="progress of n-ui")
        wait_for(lambda: worker.get("/v1/apps/demo/dlq").json()["total"] == 3, timeout=60, what="DLQ counts")
    assert worker.get("/v1/apps/demo/dlq").json() == {
        "app_id": "demo", "total": 3, "by_reason": {"missing_field": 2, "unknown_platform": 1}}
    assert worker.get("/v1/apps/other/dlq", api_key=OTHER_KEY).json()["total"] == 0
    assert worker.get("/v1/apps/demo/dlq", api_key=OTHER_KEY).status_code == 403
    assert worker.get("/v1/apps/demo/dlq", api_key=None).status_code == 401

    page = httpx.get(f"{worker.url}/ui", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]

    async with Browser(tmp_path / "chromium") as browser:
        await browser.open(f"{worker.url}/ui")

        # Without credentials the page says so and shows nothing.
        await browser.type_into("user", "u-ui")
        await browser.click("user-go")
        await browser.wait_for("document.getElementById('user-error').textContent.includes('API key')")
        assert await browser.rows("devices") == []

        # A wrong key: the API's answer is shown.
        await browser.type_into("app", "demo")
        await browser.type_into("key", OTHER_KEY)
        await browser.click("user-go")
        await browser.wait_for("document.getElementById('user-error').textContent.startsWith('403 forbidden')")

        # (a) the user's devices and preferences.
        await browser.type_into("key", DEMO_KEY)
        await browser.click("user-go")
        await browser.wait_for("document.getElementById('devices').tBodies[0].rows.length === 2", what="devices")
        assert await browser.text("user-error") == ""
        rows = await browser.rows("devices")
        assert [r[:5] for r in rows] == [["laptop", "webpush", "active", "", ""],
                                         ["phone", "fcm", "active", "", "de-DE"]]
        assert rows[1][5] == f"beta, {HOSTILE_TAG}"  # shown as text, never parsed as HTML
        assert len(rows[1][6]) == 16  # the token's fingerprint, not the token
        assert await browser.evaluate("document.querySelectorAll('img').length") == 0
        assert await browser.evaluate("window.pwned === undefined") is True
        preferences = orjson.loads(await browser.text("preferences"))
        assert preferences["channels"] == {"marketing": False}
        assert preferences["quiet_hours"] == {"start": "22:00", "end": "07:00"}
        assert preferences["timezone"] == "Europe/Berlin"

        # (b) a notification's progress, and an unknown one.
        await browser.type_into("notification", "n-ui")
        await browser.click("notification-go")
        await browser.wait_for("document.getElementById('progress').tBodies[0].rows.length > 0", what="progress")
        shown = dict((k, v) for k, v in await browser.rows("progress"))
        progress = worker.get("/v1/apps/demo/notifications/n-ui").json()
        assert shown == {"id": "n-ui", "targeted": "2", "pending": "0", "done": "true", "opened": "0",
                         "first_at": progress["first_at"], "last_at": progress["last_at"],
                         "by_status.delivered": "2"}
        await browser.type_into("notification", "n-missing")
        await browser.click("notification-go")
        await browser.wait_for("document.getElementById('notification-error').textContent"
                               ".startsWith('404 not_found')", what="the 404")
        assert await browser.rows("progress") == []

        # (c) dead letters by reason.
        await browser.click("dlq-go")
        await browser.wait_for("document.getElementById('dlq').tBodies[0].rows.length > 0", what="DLQ counts")
        assert await browser.rows("dlq") == [["missing_field", "2"], ["unknown_platform", "1"], ["total", "3"]]
        assert not [line for line in browser.console if line.startswith("exception")]
