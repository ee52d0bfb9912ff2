"""`pushstream tail status|dlq|audit`: print a pushstream output topic's records as JSON lines, following,
optionally only those of one app and/or one notification id. Ctrl-C or SIGTERM ends it with exit code 0."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import orjson

from pushstream.kafkatools import TopicMissing, follow
from pushstream.topology import kafka_bootstrap

STREAMS = {"status": "pushstream.status", "dlq": "pushstream.dlq", "audit": "pushstream.audit"}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("tail", help="print status, dead-letter or audit records as JSON lines, following",
                                 description="Follow a pushstream output topic (read_committed) and print each "
                                             "record as one JSON line. Ctrl-C stops.")
    parser.add_argument("stream", choices=sorted(STREAMS))
    parser.add_argument("--app", help="only records of this app")
    parser.add_argument("--notification", metavar="N", help="only records of this notification id")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not at the end")


def _identity(record: dict[str, Any]) -> tuple[Any, Any]:
    """(app_id, notification id) of a status, audit or dead-letter record. A dead letter names them only
    inside the original value it carries, as a notification request (`id`) or a delivery batch does."""
    app, notification = record.get("app_id"), record.get("notification_id")
    if (app is None or notification is None) and isinstance(record.get("value"), str):
        try:
            original = orjson.loads(record["value"])
        except orjson.JSONDecodeError:
            original = None
        if isinstance(original, dict):
            app = app if app is not None else original.get("app_id")
            if notification is None:
                notification = original.get("notification_id", original.get("id"))
    return app, notification


def matches(record: Any, app: str | None, notification: str | None) -> bool:
    if app is None and notification is None:
        return True
    if not isinstance(record, dict):
        return False
    have_app, have_notification = _identity(record)
    return (app is None or have_app == app) and (notification is None or have_notification == notification)


def render(raw: bytes | None) -> tuple[Any, str]:
    """(the parsed record, its JSON line). A value that is not JSON is shown as a string."""
    try:
        value = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        value = raw.decode("utf-8", "replace") if raw is not None else None
    return value, json.dumps(value, ensure_ascii=False)


async def tail(bootstrap: str, topic: str, args: argparse.Namespace, stop: asyncio.Event) -> int:
    where = "the beginning" if args.from_beginning else "the end"

    def ready() -> None:
        print(f"pushstream tail: following {topic} from {where} (Ctrl-C stops)", file=sys.stderr, flush=True)

    async for record in follow(bootstrap, topic, from_beginning=args.from_beginning, stop=stop, on_ready=ready):
        value, line = render(record.value)
        if matches(value, args.app, args.notification):
            print(line, flush=True)
    return 0


async def _main(bootstrap: str, topic: str, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await tail(bootstrap, topic, args, stop)


def run(args: argparse.Namespace) -> int:
    from pushstream.config import load_settings

    settings = load_settings(args.config)
    topic = settings.topic(STREAMS[args.stream])
    try:
        return asyncio.run(_main(kafka_bootstrap(settings.kafka.broker), topic, args))
    except TopicMissing as exc:
        print(f"pushstream tail: {exc} (is it in topics.yaml? `pushstream topics apply` creates it)", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Keep Python from complaining while flushing stdout.
        with contextlib.suppress(OSError):
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115
        return 0
