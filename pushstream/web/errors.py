"""JSON errors for every answer of pushstream's HTTP servers (contract §4), including the ones aiohttp makes itself.

aiohttp answers an unknown route (404), a wrong method (405) and a body over its size limit (413) by raising an
HTTPException whose body is text/plain; a handler's uncaught exception becomes a text/plain 500. The middleware
here turns each into `{"error": "...", "detail": ...}`, for the router's Faust web server and the sender's alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("pushstream.web")

# HTTP status → the error word of a JSON error answer made for an aiohttp exception.
ERROR_WORDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "oversize",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
    500: "internal_error",
    503: "not_ready",
}


def error_body(status: int, error: str | None = None, detail: Any = None) -> bytes:
    return orjson.dumps({"error": error or ERROR_WORDS.get(status, "http_error"), "detail": detail})


def error_response(status: int, error: str | None = None, detail: Any = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=error_body(status, error, detail), status=status, content_type="application/json",
                        headers=headers)


def _detail(request: web.Request, exc: web.HTTPException) -> Any:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return {"method": exc.method, "allowed": sorted(exc.allowed_methods)}
    if exc.status == 404:
        return f"no route {request.path}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return (exc.text or "").removeprefix(f"{exc.status}: ").strip() or None  # "Maximum request body size…"
    return exc.reason


def json_errors_middleware() -> Any:
    """An aiohttp middleware: aiohttp's own error answers and uncaught exceptions become JSON errors."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and the like are no errors
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_response(exc.status, None, _detail(request, exc), headers)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            # The message and traceback go to the log, never to the client (they may quote input or internals).
            log.exception("unhandled error answering %s %s", request.method, request.path)
            return error_response(500, "internal_error", None)

    return middleware
