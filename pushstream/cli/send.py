"""`pushstream send`: publish one notification request and print its id.

Through Kafka by default (validated first with the ingest path's own `parse_notification`, then published to
`pushstream.notifications` keyed by its id, exactly as an external producer would), or `--via http` through a
worker's HTTP API with the app's first API key."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

import orjson

from pushstream.config import Settings
from pushstream.kafkatools import KafkaSession, TopicMissing, publish
from pushstream.topology import kafka_bootstrap


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("send", help="publish a notification (through Kafka, or --via http) and print its id")
    parser.add_argument("--app", required=True, help="app id (as in the config's apps)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", action="extend", nargs="+", metavar="U", help="user id(s); repeatable")
    target.add_argument("--all", action="store_true", help="every active device of the app")
    parser.add_argument("--title", required=True)
    parser.add_argument("--body")
    parser.add_argument("--channel", default="transactional", help="transactional (default) or marketing")
    parser.add_argument("--category")
    parser.add_argument("--priority", help="high or normal (default: by channel)")
    parser.add_argument("--ttl", type=int, help="seconds")
    parser.add_argument("--id", help="notification id (default: a new random one)")
    parser.add_argument("--via", choices=("kafka", "http"), default="kafka")
    parser.add_argument("--url", help="worker base URL for --via http (default: http://<web.host>:<web.port>)")


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    """The notification request (contract §1) the arguments describe."""
    data: dict[str, Any] = {
        "id": args.id or f"n-{uuid.uuid4().hex[:16]}",
        "app_id": args.app,
        "channel": args.channel,
        "target": {"all": True} if args.all else {"user_ids": list(args.user)},
        "title": args.title,
    }
    for name in ("body", "category", "priority", "ttl"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    return data


def send_kafka(settings: Settings, data: dict[str, Any]) -> str:
    from pushstream.models.notifications import parse_notification

    parse_notification(data, settings, received_at=time.time())  # the planner's validation, before publishing
    topic = settings.topic("pushstream.notifications")
    bootstrap = kafka_bootstrap(settings.kafka.broker)

    async def send() -> None:
        async with KafkaSession(bootstrap, client_id="pushstream-send") as session:
            await session.partitions(topic)  # TopicMissing rather than a minute's wait for its metadata
        await publish(bootstrap, topic, [(data["id"].encode(), orjson.dumps(data))])

    asyncio.run(send())
    return str(data["id"])


class HttpError(Exception):
    pass


def send_http(settings: Settings, data: dict[str, Any], url: str | None) -> str:
    import httpx

    app = settings.app(data["app_id"])
    if app is None:
        raise HttpError(f"invalid notification: unknown_app: app {data['app_id']!r} is not configured")
    if not app.api_keys:
        raise HttpError(f"app {data['app_id']!r} has no api_keys in the config: --via http needs one")
    base = (url or f"http://{settings.web.host}:{settings.web.port}").rstrip("/")
    body = {k: v for k, v in data.items() if k != "app_id"}
    try:
        response = httpx.post(f"{base}/v1/apps/{data['app_id']}/notifications", content=orjson.dumps(body),
                              headers={"Authorization": f"Bearer {app.api_keys[0]}",
                                       "Content-Type": "application/json"}, timeout=30)
    except httpx.HTTPError as exc:
        raise HttpError(f"cannot reach the pushstream API at {base}: {exc or type(exc).__name__}") from None
    if response.status_code != 202:
        try:
            answer = response.json()
            detail = f"{answer.get('error')}: {answer.get('detail')}"
        except ValueError:
            detail = response.text[:200]
        raise HttpError(f"{base} answered {response.status_code}: {detail}")
    return str(response.json()["id"])


def run(args: argparse.Namespace) -> int:
    from pushstream.config import load_settings
    from pushstream.models.base import Invalid

    settings = load_settings(args.config)
    data = request_of(args)
    try:
        sent = send_http(settings, data, args.url) if args.via == "http" else send_kafka(settings, data)
    except Invalid as exc:
        print(f"pushstream send: invalid notification: {exc.reason}: {exc.detail}", file=sys.stderr)
        return 2
    except (HttpError, TopicMissing) as exc:
        print(f"pushstream send: {exc}", file=sys.stderr)
        return 2
    print(sent)
    return 0
