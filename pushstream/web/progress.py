"""Campaign progress and DLQ counts over HTTP (contract §4), answered by the owner of the key's partition, and
the read-only /ui page (static HTML and JS; it calls the JSON routes with the key the user types in)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from faust.web import Request, Response, View

from pushstream.agents.io import Context
from pushstream.rules.progress import progress_document
from pushstream.tables import table_key
from pushstream.web import errors

# (view, request, table name, key, answer when local) → the answer of the key's owner
Routed = Callable[[View, Request, str, str, Callable[[], Awaitable[Response]]], Awaitable[Response]]
Authorize = Callable[[View, Request, str], "Response | None"]
# (view, request, app id, notification id) → the answer to DELETE (a cancel)
Cancel = Callable[[View, Request, str, str], Awaitable[Response]]

# The page's only script is its own file; nothing it shows is ever parsed as HTML.
UI_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                                         "connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
              "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
UI_FILES = {"ui.html": "text/html", "ui.js": "application/javascript", "ui.css": "text/css"}


def json_answer(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), status=status, content_type="application/json")


def register(ctx: Context, routed: Routed, authorize: Authorize, cancel: Cancel | None = None) -> None:
    app, tables = ctx.app, ctx.tables

    @app.page("/v1/apps/{app_id}/notifications/{notification_id}")
    class NotificationProgress(View):
        async def get(self, request: Request, app_id: str, notification_id: str) -> Response:
            denied = authorize(self, request, app_id)
            if denied is not None:
                return denied
            key = f"{app_id}/{notification_id}"

            async def local() -> Response:
                doc = tables.progress.get(table_key(key))
                if doc is None:
                    return self.bytes(errors.error_body(404, "not_found",
                                                        f"no status recorded for notification {notification_id!r}"),
                                      status=404, content_type="application/json")
                return json_answer(self, progress_document(doc))

            return await routed(self, request, tables.progress.name, key, local)

        async def delete(self, request: Request, app_id: str, notification_id: str) -> Response:
            if cancel is None:
                return json_answer(self, {"error": "method_not_allowed", "detail": "DELETE"}, 405)
            return await cancel(self, request, app_id, notification_id)

    @app.page("/v1/apps/{app_id}/dlq")
    class DeadLetterCounts(View):
        async def get(self, request: Request, app_id: str) -> Response:
            denied = authorize(self, request, app_id)
            if denied is not None:
                return denied

            async def local() -> Response:
                by_reason = (tables.dlq_counts.get(table_key(app_id)) or {}).get("by_reason", {})
                return json_answer(self, {"app_id": app_id, "total": sum(by_reason.values()),
                                          "by_reason": dict(sorted(by_reason.items()))})

            return await routed(self, request, tables.dlq_counts.name, app_id, local)

    files = {name: resources.files("pushstream.web.static").joinpath(name).read_bytes() for name in UI_FILES}

    def static(view: View, name: str) -> Response:
        return view.bytes(files[name], content_type=UI_FILES[name], headers=dict(UI_HEADERS))

    @app.page("/ui")
    class Ui(View):
        async def get(self, request: Request) -> Response:
            return static(self, "ui.html")

    @app.page("/ui/ui.js")
    class UiScript(View):
        async def get(self, request: Request) -> Response:
            return static(self, "ui.js")

    @app.page("/ui/ui.css")
    class UiStyle(View):
        async def get(self, request: Request) -> Response:
            return static(self, "ui.css")
