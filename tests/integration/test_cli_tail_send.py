"""`pushstream send` (through Kafka and through the HTTP API) and `pushstream tail` (following, filtered, the DLQ
by notification id, stopped by Ctrl-C or SIGTERM) against the real broker and a real worker."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import orjson

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import BIN, Kafka, Worker, make_deployment, make_stack, wait_for


class Lines:
    """The lines a child process writes to a pipe, read in a thread so a test can wait for them with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.queue.put(line.rstrip("\n"))

    def until(self, condition: Any, timeout: float, what: str) -> list[str]:
        def check() -> bool:
            while not self.queue.empty():
                self.seen.append(self.queue.get_nowait())
            return bool(condition(self.seen))

        wait_for(check, timeout=timeout, interval=0.05, what=what)
        return self.seen


def start_tail(deployment: Any, *args: str) -> tuple[subprocess.Popen[str], Lines, Lines]:
    process = subprocess.Popen([str(BIN / "pushstream"), "tail", *args], env=deployment.env(), cwd=deployment.root,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    return process, Lines(process.stdout), Lines(process.stderr)


async def test_send_through_kafka_and_http_and_tail_follows_filtered(
    tmp_path: Path, fakes: FakesProcess, workers: list[Worker]
) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    deployment = stack.deployment
    worker = Worker(deployment, "w1").start()
    workers.append(worker)
    worker.wait_ready()
    tails: list[subprocess.Popen[str]] = []
    try:
        async with Kafka(deployment) as kafka:
            await kafka.publish("pushstream.devices", [
                {"type": "register", "app_id": "demo", "user_id": u, "device_id": f"{u}-android", "platform": "fcm",
                 "token": f"fcm-{u}"} for u in ("u-1", "u-2")])
            wait_for(lambda: all(worker.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]
                                 for u in ("u-1", "u-2")), timeout=60, what="registrations")

            # A tail started before anything was sent follows from the end.
            follower, out, err = start_tail(deployment, "status", "--app", "demo")
            tails.append(follower)
            err.until(lambda lines: any("following" in line for line in lines), timeout=30, what="tail ready")

            sent = deployment.cli("send", "--app", "demo", "--user", "u-1", "u-2", "--title", "Hi",
                                  "--body", "through Kafka", "--category", "welcome")
            via_kafka = sent.stdout.strip()
            assert via_kafka.startswith("n-") and sent.stderr == ""
            sent = deployment.cli("send", "--app", "demo", "--user", "u-1", "--title", "Hi", "--via", "http",
                                  "--url", worker.url, "--id", "n-http")
            assert sent.stdout.strip() == "n-http"

            lines = out.until(lambda ls: len(ls) >= 3, timeout=60, what="3 status lines")
            records = [orjson.loads(line) for line in lines]
            assert sorted((r["notification_id"], r["device_id"], r["status"]) for r in records) == sorted([
                (via_kafka, "u-1-android", "delivered"), (via_kafka, "u-2-android", "delivered"),
                ("n-http", "u-1-android", "delivered")])

            # What send published is what a producer would: keyed by id, the request of contract §1.
            published = await kafka.read_json("pushstream.notifications", until=lambda v: len(v) == 2)
            assert next(v for v in published if v["id"] == via_kafka) == {
                "id": via_kafka, "app_id": "demo", "channel": "transactional", "title": "Hi",
                "body": "through Kafka", "category": "welcome", "target": {"user_ids": ["u-1", "u-2"]}}

            # From the beginning, one notification only.
            one, one_out, _ = start_tail(deployment, "status", "--notification", "n-http", "--from-beginning")
            tails.append(one)
            assert [orjson.loads(line)["notification_id"] for line in
                    one_out.until(lambda ls: len(ls) >= 1, timeout=30, what="n-http's status")] == ["n-http"]

            # The DLQ names the notification inside the original value it keeps.
            await kafka.publish("pushstream.notifications", [{"id": "n-empty", "app_id": "demo",
                                                              "target": {"user_ids": ["u-1"]}}])
            dlq, dlq_out, _ = start_tail(deployment, "dlq", "--notification", "n-empty", "--from-beginning")
            tails.append(dlq)
            letter = orjson.loads(dlq_out.until(lambda ls: len(ls) >= 1, timeout=60, what="the dead letter")[0])
            assert letter["reason"] == "empty_notification"
            assert orjson.loads(letter["value"])["id"] == "n-empty"

            # Ctrl-C and SIGTERM both end a tail cleanly.
            follower.send_signal(signal.SIGINT)
            for process in tails[1:]:
                process.send_signal(signal.SIGTERM)
            assert [process.wait(timeout=30) for process in tails] == [0, 0, 0]
            # Nothing else was printed: one line on stderr, and the filtered tail saw n-http's record only.
            assert err.until(lambda lines: True, timeout=1, what="stderr") == [
                f"pushstream tail: following {deployment.topic('pushstream.status')} from the end (Ctrl-C stops)"]
            assert [orjson.loads(line)["notification_id"]
                    for line in one_out.until(lambda ls: True, timeout=1, what="rest")] == ["n-http"]
    finally:
        for process in tails:
            if process.poll() is None:
                process.kill()


def test_send_rejects_an_invalid_request_before_publishing(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "d")
    result = deployment.cli("send", "--app", "demo", "--all", "--title", "x", "--channel", "loud", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("pushstream send: invalid notification: bad_field: ") and "channel" in result.stderr
    unknown = deployment.cli("send", "--app", "nope", "--all", "--title", "x", check=False)
    assert unknown.returncode == 2 and "unknown_app" in unknown.stderr
    bare = make_deployment(tmp_path / "bare", apply=False)  # no topics created
    missing = bare.cli("tail", "dlq", check=False)
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"pushstream tail: topic {bare.topic('pushstream.dlq')} does not exist")
