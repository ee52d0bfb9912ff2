"""`make demo`: local Kafka (already started by scripts/demo), the fake providers, a worker, sample traffic,
and a report of what happened. Everything runs on loopback; each run uses fresh topics, deleted at the end
unless --keep."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from pushstream import kafkatools
from pushstream.config import load_settings
from pushstream.kafkatools import BrokerUnreachable, say
from pushstream.testing.fakes import webpush_subscription
from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import WorkerProcess, dev_app_config, free_port, wait_until
from pushstream.topology import apply_topics, kafka_bootstrap, load_layout

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "demo-key"
PLATFORMS = ("apns", "fcm", "webpush")


def device_events(users: int, setup: dict[str, Any]) -> list[dict[str, Any]]:
    seed = bytes.fromhex(setup["webpush_seed"])
    locales = ["en-US", "de-DE", "fr-FR", "de-AT"]
    events: list[dict[str, Any]] = []
    for i in range(users):
        user = f"user-{i:03d}"
        locale = locales[i % len(locales)]
        events += [
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-iphone",
             "platform": "apns", "token": f"{i:08x}" * 8, "locale": locale, "app_version": "6.4.1"},
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-pixel",
             "platform": "fcm", "token": f"fcm-token-{user}", "locale": locale},
            {"type": "register", "app_id": "demo", "user_id": user, "device_id": f"{user}-browser",
             "platform": "webpush", "locale": locale,
             "subscription": webpush_subscription(setup["webpush_origin"], seed, f"sub-{user}")},
        ]
    return events


async def publish(bootstrap: str, topic: str, values: list[dict[str, Any]]) -> None:
    """Like any external producer: JSON values, random partitions."""
    await kafkatools.publish(bootstrap, topic, [(None, orjson.dumps(v)) for v in values], partitioner=random.choice)


async def read_statuses(bootstrap: str, topic: str, notification_id: str, expected: int,
                        timeout: float = 60) -> list[dict[str, Any]]:
    final: dict[str, dict[str, Any]] = {}

    async def consume() -> None:
        async with contextlib.aclosing(kafkatools.follow(bootstrap, topic, from_beginning=True)) as records:
            async for record in records:
                status = orjson.loads(record.value)
                if status["notification_id"] == notification_id and status["status"] != "retrying":
                    final[status["device_id"]] = status
                    if len(final) >= expected:
                        return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(consume(), timeout)
    return list(final.values())


def report(statuses: list[dict[str, Any]]) -> None:
    table: dict[str, Counter[str]] = {p: Counter() for p in PLATFORMS}
    for s in statuses:
        table[s["platform"]][s["status"] + (f" ({s['reason']})" if s["reason"] else "")] += 1
    for platform in PLATFORMS:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(table[platform].items()))
        say(f"    {platform:8s} {parts}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pushstream demo")
    parser.add_argument("--users", type=int, default=100, help="users, each with an iPhone, a Pixel and a browser")
    parser.add_argument("--workdir", type=Path, default=ROOT / "demo-run")
    parser.add_argument("--keep", action="store_true",
                        help="leave the worker, the fakes and the run's topics in place at the end")
    parser.add_argument("--broker", default=f"127.0.0.1:{os.environ.get('PUSHSTREAM_KAFKA_PORT', '9092')}",
                        help="host:port of the Kafka broker (default 127.0.0.1:$PUSHSTREAM_KAFKA_PORT or 9092)")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    say("==> starting the fake providers (APNs over HTTP/2+TLS, FCM v1 + OAuth, Web Push with VAPID)")
    fakes = FakesProcess(workdir / "fakes")
    client = fakes.start()
    setup = client.setup()
    prefix = f"demo{int(time.time())}."
    web_port = free_port(6066)
    config = {
        "kafka": {"broker": f"kafka://{args.broker}", "topic_prefix": prefix, "topics_file": str(ROOT / "topics.yaml")},
        "web": {"port": web_port},
        "apps": {"demo": dev_app_config(setup, [API_KEY])},
    }
    config_path = workdir / "pushstream.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    settings = load_settings(config_path)
    bootstrap = kafka_bootstrap(settings.kafka.broker)
    worker = WorkerProcess(config_path=config_path, datadir=workdir / f"data-{prefix}", web_port=web_port,
                           log_path=workdir / "worker.log")
    try:
        say(f"==> creating topics (prefix {prefix!r}) and starting a worker on :{web_port}")
        created, _ = asyncio.run(apply_topics(settings, load_layout(ROOT / "topics.yaml")))
        say(f"    {len(created)} topics created")
        worker.start().wait_ready(timeout=120)
        say(f"==> registering {args.users * 3} devices ({args.users} users x APNs, FCM, Web Push)")
        events = device_events(args.users, setup)
        asyncio.run(publish(bootstrap, settings.topic("pushstream.devices"), events))
        asyncio.run(publish(bootstrap, settings.topic("pushstream.preferences"), [
            {"app_id": "demo", "user_id": "user-001", "channels": {"marketing": False}},
            {"app_id": "demo", "user_id": "user-002", "categories": {"order_shipped": False}},
        ]))
        api = httpx.Client(base_url=worker.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
        last = f"user-{args.users - 1:03d}"
        wait_until(lambda: len(api.get(f"/v1/apps/demo/users/{last}/devices").json()["devices"]) == 3,
                   timeout=60, what="registrations")
        dead_token = events[0]["token"]
        client.unregister("apns", dead_token)
        say("    the fake APNs now answers 410 Unregistered for user-000's iPhone (the app was deleted)")

        say("==> POST /v1/apps/demo/notifications: a localized transactional notification to every user")
        users = [f"user-{i:03d}" for i in range(args.users)]
        response = api.post("/v1/apps/demo/notifications", content=orjson.dumps({
            "id": "order-shipped-1", "channel": "transactional", "category": "order_shipped", "priority": "high",
            "target": {"user_ids": users}, "title": "Your order shipped", "body": "It arrives on Tuesday",
            "localized": {"de": {"title": "Bestellung versandt", "body": "Sie kommt am Dienstag"},
                          "fr": {"title": "Commande expédiée", "body": "Elle arrive mardi"}},
            "data": {"order_id": "42"}, "ttl": 3600, "collapse_key": "order-42"}))
        say(f"    {response.status_code} {response.text}")
        statuses = asyncio.run(read_statuses(bootstrap, settings.topic("pushstream.status"), "order-shipped-1",
                                             expected=len(events)))
        say(f"==> outcomes on {settings.topic('pushstream.status')} ({len(statuses)} devices):")
        report(statuses)
        received = client.stats()
        say("==> what the fake providers received: " + ", ".join(
            f"{p} {received[p]['requests']} requests" for p in PLATFORMS))
        german = next(r for r in client.requests("apns") if r["key"] == events[3]["token"])
        say(f"    APNs body for user-001 (de-DE): {german['body']}")
        browser = next(r for r in client.requests("webpush") if r["key"] == "sub-user-006")
        say(f"    decrypted Web Push plaintext for user-006 (fr-FR): {browser['plaintext']}")

        view = wait_until(lambda: next((d for d in api.get("/v1/apps/demo/users/user-000/devices").json()["devices"]
                                         if d["device_id"] == "user-000-iphone" and d["status"] == "inactive"), None),
                          timeout=30, what="deactivation")
        say(f"==> the invalid token deactivated user-000's iPhone: status={view['status']} "
            f"reason={view['inactive_reason']} at={view['inactive_at']}")

        say("==> a second notification skips it")
        api.post("/v1/apps/demo/notifications", content=orjson.dumps({
            "id": "order-shipped-2", "title": "Another update", "target": {"user_ids": users[:3]}}))
        report(asyncio.run(read_statuses(bootstrap, settings.topic("pushstream.status"), "order-shipped-2",
                                         expected=9)))
        say()
        say("Where to look:")
        say(f"  curl -H 'Authorization: Bearer {API_KEY}' {worker.url}/v1/apps/demo/users/user-000/devices")
        say(f"  curl -H 'Authorization: Bearer {API_KEY}' {worker.url}/v1/apps/demo/users/user-001/preferences")
        say(f"  curl {worker.url}/metrics | grep pushstream_")
        say(f"  PUSHSTREAM_CONFIG={config_path} pushstream tail status --from-beginning --notification order-shipped-2")
        say(f"  kcat -C -b {args.broker} -X isolation.level=read_committed -t {settings.topic('pushstream.status')} -e")
        say(f"  config: {config_path}   worker log: {worker.log_path}   fakes log: {fakes.log_file}")
        if args.keep:
            say(f"  the worker (pid {worker.process.pid if worker.process else '?'}), the fakes and the topics "
                f"{prefix}* stay")
        else:
            say("  (the worker and fakes stop and the run's topics are deleted now; `make demo ARGS=--keep "
                "KEEP_KAFKA=1` leaves everything in place)")
        return 0
    finally:
        if not args.keep:
            worker.stop()
            fakes.stop()
            clean_up(bootstrap, prefix, workdir / f"data-{prefix}")


def clean_up(bootstrap: str, prefix: str, datadir: Path) -> None:
    """Delete the run's topics (all carry its prefix, Faust's own too) and the worker's RocksDB data."""
    try:
        deleted = asyncio.run(kafkatools.delete_topics_with_prefix(bootstrap, prefix))
    except BrokerUnreachable as exc:
        say(f"==> could not delete the topics {prefix}*: {exc}")
    else:
        say(f"==> deleted the run's {len(deleted)} topics ({prefix}*)")
    shutil.rmtree(datadir, ignore_errors=True)


def entry() -> int:
    from aiokafka.errors import KafkaConnectionError

    try:
        return main()
    except BrokerUnreachable as exc:
        print(f"demo: {exc}", file=sys.stderr)
    except KafkaConnectionError as exc:
        print(f"demo: cannot reach the Kafka broker ({exc})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(entry())
