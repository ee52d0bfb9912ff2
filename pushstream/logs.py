"""Worker logs: one JSON object per line by default, or plain text for people (``--log-format text``).

Each JSON line has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``role``, ``logger`` and ``message``, plus
``app_id`` and ``notification_id`` when known: from ``extra={...}`` on the call, else from the context a task
bound with `bind` (the router per intent, the senders per batch). A traceback goes in ``exc``. Other ``extra``
keys (e.g. the access log's ``method``, ``path``, ``status``, ``duration_ms``) are added as they are.

Secrets never reach a log: tokens and endpoints are logged as fingerprints, API keys not at all, and the access
log has the path without its query string and no headers. Nothing here runs on import.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

FORMATS = ("json", "text")
FORMAT_ENV = "PUSHSTREAM_LOG_FORMAT"
ROLE_ENV = "PUSHSTREAM_LOG_ROLE"

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("pushstream_log", default=None)

# LogRecord attributes: everything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def bind(**fields: str | None) -> contextvars.Token[dict[str, str] | None]:
    """Attach ``app_id`` / ``notification_id`` to every log line of the current task (and tasks it starts)."""
    return _context.set({k: v for k, v in fields.items() if v is not None})


def log_format(value: str | None = None) -> str:
    """The format asked for (an option's value, else $PUSHSTREAM_LOG_FORMAT), default json."""
    chosen = (value or os.environ.get(FORMAT_ENV) or "json").lower()
    if chosen not in FORMATS:
        raise ValueError(f"unknown log format {chosen!r} (one of {', '.join(FORMATS)})")
    return chosen


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
                      .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "role": self.role,
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound = _context.get()
        if bound:
            out.update(bound)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``[time] [pid] [LEVEL] logger: message (app_id=… notification_id=…)`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        bound = dict(_context.get() or {})
        bound.update({k: str(v) for k, v in record.__dict__.items()
                      if k in ("app_id", "notification_id")})
        if bound:
            text += " (" + " ".join(f"{k}={v}" for k, v in bound.items()) + ")"
        return text


def formatter(role: str, fmt: str | None = None) -> logging.Formatter:
    return JsonFormatter(role) if log_format(fmt) == "json" else TextFormatter()


def configure(role: str, *, fmt: str | None = None, level: str | int = "info") -> None:
    """Send the root logger to stdout in the chosen format (the sender process; Faust uses `faust_config`)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter(role, fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)


def faust_config(role: str) -> dict[str, Any]:
    """Faust's ``logging_config``: merged over the one Faust builds, so its --loglevel still applies."""
    return {
        "version": 1, "merge": True, "disable_existing_loggers": False,
        "formatters": {"pushstream": {"()": "pushstream.logs.formatter", "role": role}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "pushstream",
                                 "stream": "ext://sys.stdout"}},
    }


def role_name(default: str) -> str:
    return os.environ.get(ROLE_ENV) or default


# HTTP access log -----------------------------------------------------------------------------------------------

access_log = logging.getLogger("pushstream.access")
QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})  # probes and scrapes: DEBUG, not INFO


def access_middleware() -> Any:
    """An aiohttp middleware logging method, path (no query string: it may carry secrets), status and duration.
    Headers are never logged (Authorization holds the API key)."""
    from aiohttp import web

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            level = logging.DEBUG if request.path in QUIET_PATHS and status < 400 else logging.INFO
            if access_log.isEnabledFor(level):
                duration = (time.monotonic() - started) * 1000
                access_log.log(level, "%s %s %d %.1f ms", request.method, request.path, status, duration,
                               extra={"method": request.method, "path": request.path, "status": status,
                                      "duration_ms": round(duration, 2)})

    return middleware
