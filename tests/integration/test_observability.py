"""Observability end to end: a real Prometheus scrapes a router and a sender process and sees their series
move; the dead-letter counters equal the DLQ topic; every worker log line is JSON, and no log of the run holds a
token, a Web Push subscription key or an API key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import free_port
from tests.integration.harness import DEMO_KEY, Kafka, RoleProcess, make_stack, wait_for

USERS = ["obs-1", "obs-2", "obs-3"]


class Prometheus:
    """Debian's prometheus server on a free loopback port, scraping ``targets`` (job → host:port) every second."""

    def __init__(self, root: Path, targets: dict[str, str]) -> None:
        self.root = root
        self.port = free_port()
        self.log_path = root / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(Path(__file__).resolve().parents[2] / "deploy/prometheus/alerts.yml")],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                     for job, target in targets.items()]}
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: run scripts/install-test-deps (make test does)"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.root / 'prometheus.yml'}", f"--storage.tsdb.path={self.root / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (empty while Prometheus is starting)."""
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text()[-2000:]
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/query", params={"query": expr}, timeout=5)
        except httpx.HTTPError:
            return []
        if answer.status_code != 200:
            return []
        return list(answer.json()["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


def registrations(stack: Any) -> list[dict[str, Any]]:
    events = []
    for i, user in enumerate(USERS):
        events += [
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-ios", "platform": "apns",
             "token": f"{i + 0xabc:04x}" * 16},
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-android",
             "platform": "fcm", "token": f"fcm-secret-token-{user}"},
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-web",
             "platform": "webpush", "subscription": stack.subscription(f"obs-web-{user}")},
        ]
    return events


def is_json_object(line: str) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def secrets_of(events: list[dict[str, Any]]) -> set[str]:
    found = {DEMO_KEY}
    for event in events:
        if "token" in event:
            found.add(event["token"])
        if "subscription" in event:
            found.add(event["subscription"]["keys"]["p256dh"])
            found.add(event["subscription"]["keys"]["auth"])
    return found


async def test_prometheus_sees_series_move_and_logs_hold_no_secret(
        tmp_path: Path, fakes: FakesProcess, processes: list[Any]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    d = stack.deployment
    router_port, sender_port = free_port(), free_port()
    router = RoleProcess(d, "router", ["--role", "router", "--datadir", str(d.root / "data-router"),
                                       "--web-host", "127.0.0.1", "--web-port", str(router_port)], router_port)
    sender = RoleProcess(d, "sender", ["--role", "sender", "--lane", "transactional", "--web-port",
                                       str(sender_port)], sender_port)
    prometheus = Prometheus(tmp_path / "prometheus", {"pushstream-router": f"127.0.0.1:{router_port}",
                                                       "pushstream-sender": f"127.0.0.1:{sender_port}"})
    for process in (router, sender, prometheus):
        processes.append(process.start())
    router.wait_ready()
    sender.wait_ready()
    wait_for(lambda: prometheus.value('sum(up{job=~"pushstream-.*"})') == 2, timeout=60,
             what="prometheus scraping both workers")
    # Both roles export the process and Python collectors, and lag per group, topic and partition.
    for job in ("pushstream-router", "pushstream-sender"):
        def exported(job: str = job) -> bool:
            return bool(prometheus.query(f'process_cpu_seconds_total{{job="{job}"}}')
                        and prometheus.query(f'python_info{{job="{job}"}}'))

        wait_for(exported, timeout=30, what=f"process metrics of {job}")
    wait_for(lambda: prometheus.query('pushstream_consumer_lag{role="router"}')
             and prometheus.query('pushstream_consumer_lag{role="sender"}'), timeout=60, what="lag of both roles")
    assert prometheus.query('pushstream_deliveries_total{status="delivered"}') == []
    assert prometheus.value('sum(pushstream_table_keys{table="devices"})') in (None, 0)

    events = registrations(stack)
    async with Kafka(d) as kafka:
        await kafka.publish("pushstream.devices", events)
        wait_for(lambda: all(len(router.get(f"/v1/apps/demo/users/{u}/devices").json()["devices"]) == 3
                             for u in USERS), timeout=60, what="registrations")
        answer = httpx.post(f"{router.url}/v1/apps/demo/notifications?api_key={DEMO_KEY}",
                            headers={"Authorization": f"Bearer {DEMO_KEY}"}, timeout=10,
                            content=orjson.dumps({"id": "otp-obs", "channel": "transactional", "priority": "high",
                                                  "title": "Your code", "body": "123456",
                                                  "target": {"user_ids": USERS}}))
        assert answer.status_code == 202, answer.text
        await kafka.publish("pushstream.notifications", [b"{not json"])  # one dead letter, from the router
        statuses = await kafka.read_json("pushstream.status", until=lambda s: sum(
            1 for r in s if r["notification_id"] == "otp-obs" and r["status"] == "delivered") == 3 * len(USERS))
        assert {r["status"] for r in statuses if r["notification_id"] == "otp-obs"} == {"delivered"}
        dlq = await kafka.read_json("pushstream.dlq", until=lambda r: len(r) >= 1, settle=1.0)

    devices = 3 * len(USERS)
    # The router's devices table has a key per user (RocksDB's estimate: overwrites in the memtable may count).
    wait_for(lambda: (prometheus.value('sum(pushstream_table_keys{table="devices"})') or 0) >= len(USERS),
             timeout=30, what="table size of devices")
    wait_for(lambda: prometheus.value('sum(pushstream_deliveries_total{status="delivered",lane="transactional",'
                                      'app_id="demo"})') == devices, timeout=30, what="delivered devices counted")
    assert prometheus.value('sum(pushstream_delivery_latency_seconds_count{lane="transactional"})') == devices
    # Publish → answer on this box: well under a minute, and above zero.
    p99 = prometheus.value('histogram_quantile(0.99, sum by (le) '
                           '(pushstream_delivery_latency_seconds_bucket{lane="transactional"}))')
    assert p99 is not None and 0 < p99 < 60
    assert prometheus.value("sum(pushstream_provider_requests_total)") == devices
    assert prometheus.value('count(pushstream_provider_request_seconds_count{lane="transactional"})') == 3
    assert prometheus.value("sum(pushstream_provider_in_flight)") == 0
    wait_for(lambda: prometheus.value("sum(pushstream_dead_letters_total)") == len(dlq), timeout=30,
             what="dead-letter counters equal to the DLQ topic")
    assert prometheus.value('pushstream_dead_letters_total{source="notification",reason="bad_json"}') == 1
    # The router's lag drains to zero on the notifications topic once everything is processed.
    wait_for(lambda: prometheus.value(f'sum(pushstream_consumer_lag{{role="router",'
                                      f'topic="{d.topic("pushstream.notifications")}"}})') == 0,
             timeout=60, what="router lag on notifications back to 0")

    assert sender.stop() == 0 and router.stop() == 0
    prometheus.kill()
    for process in (router, sender):
        lines = process.log_path.read_text().splitlines()
        assert lines, process.name
        not_json = [line for line in lines if not is_json_object(line)]
        assert not not_json, f"{process.name}: {not_json[:5]}"  # every line one JSON object
        records = [orjson.loads(line) for line in lines]
        for record in records:
            assert {"time", "level", "role", "logger", "message"} <= record.keys(), record
        if process is router:
            access = [r for r in records if r["logger"] == "pushstream.access" and r.get("method") == "POST"]
            assert any(r["path"] == "/v1/apps/demo/notifications" and r["status"] == 202 for r in access), access
        else:
            assert {r["role"] for r in records} == {"sender-transactional"}
    logs = {path.name: path.read_text(errors="replace") for path in (router.log_path, sender.log_path,
                                                                    prometheus.log_path)}
    for secret in secrets_of(events):
        for name, text in logs.items():
            assert secret not in text, f"{secret!r} in {name}"
