"""`pushstream notifications show ID [--app A]` (contract §5): a notification's campaign progress, read from a
worker's HTTP API with the app's API key from the configuration."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from pushstream.config import ConfigError, Settings, load_settings

URL_ENV = "PUSHSTREAM_URL"


def add_parser(commands: Any) -> None:
    """The `notifications` command and its `show` subcommand, on the main parser's subparsers."""
    notifications = commands.add_parser("notifications", help="campaign progress of notifications")
    sub = notifications.add_subparsers(dest="notifications_command", required=True)
    show = sub.add_parser("show", help="print a notification's progress document as JSON")
    show.add_argument("id", help="the notification id")
    show.add_argument("--app", help="app id (default: the only app in the configuration)")
    show.add_argument("--url", help=f"a worker's HTTP API (default: ${URL_ENV}, else http://127.0.0.1:<web.port>)")


def pick_app(settings: Settings, app_id: str | None) -> str:
    if app_id is not None:
        if settings.app(app_id) is None:
            raise ConfigError(f"app {app_id!r} is not in the configuration")
        return app_id
    if len(settings.apps) != 1:
        raise ConfigError(f"--app is needed: the configuration has apps {', '.join(sorted(settings.apps))}")
    return next(iter(settings.apps))


def show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    app_id = pick_app(settings, args.app)
    app = settings.app(app_id)
    if app is None or not app.api_keys:
        raise ConfigError(f"app {app_id!r} has no api_keys to call the HTTP API with")
    base = (args.url or os.environ.get(URL_ENV) or f"http://127.0.0.1:{settings.web.port}").rstrip("/")
    url = f"{base}/v1/apps/{quote(app_id, safe='')}/notifications/{quote(args.id, safe='')}"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {app.api_keys[0]}",
                                           "Accept": "application/json"}, timeout=10)
    except httpx.HTTPError as exc:
        print(f"pushstream: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    try:
        body = response.json()
    except ValueError:
        body = {"error": f"HTTP {response.status_code}", "detail": response.text[:500]}
    if response.status_code != 200:
        print(f"pushstream: {response.status_code} {body.get('error')}: {body.get('detail')}", file=sys.stderr)
        return 1
    print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    return 0
