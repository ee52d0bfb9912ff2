"""HTTP API: table views routed to the partition owner, health, readiness and metrics.

Faust's own table_route takes one URL parameter as the key; pushstream's keys are `app_id/user_id`, so the
routing is done here with the app's router, on the same key bytes the tables use.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from pushstream import logs, metrics
from pushstream.agents.io import Context
from pushstream.models.base import Invalid, iso
from pushstream.models.cancel import parse_cancel
from pushstream.models.inputs import decode_body
from pushstream.rules.audit import REQUEST_ID_HEADER, audit_record, clean_user_agent, key_fingerprint
from pushstream.rules.keys import user_key
from pushstream.rules.registry import public_device
from pushstream.runtime import Runtime
from pushstream.tables import table_key
from pushstream.web import errors, openapi, progress

ROUTED_HEADER = "X-Pushstream-Routed"
REQUEST_ID = "X-Request-Id"


def request_id_middleware() -> Any:
    """Give every HTTP request an id (the audit record's ``request_id``) and echo it as ``X-Request-Id``."""
    from aiohttp import web

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        request["request_id"] = request_id
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers[REQUEST_ID] = request_id
            raise
        response.headers[REQUEST_ID] = request_id
        return response

    return middleware


def bearer_key(request: Request) -> str:
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


def error(view: View, status: int, message: str, detail: Any = None) -> Response:
    return view.bytes(errors.error_body(status, message, detail), status=status, content_type="application/json")


def authorize(rt: Runtime, view: View, request: Request, app_id: str) -> Response | None:
    """None when the bearer key belongs to this app; else the 401/403/404 answer."""
    header = request.headers.get("Authorization", "")
    scheme, _, api_key = header.partition(" ")
    if scheme.lower() != "bearer" or not api_key:
        return error(view, 401, "unauthorized", "send Authorization: Bearer <api key>")
    owner = rt.settings.app_for_key(api_key.strip())
    if owner is None:
        return error(view, 401, "unauthorized", "unknown api key")
    if owner != app_id:
        return error(view, 403, "forbidden", "this key belongs to another app")
    return None


def register(ctx: Context, ready_checks: Callable[[], dict[str, bool]] | None = None) -> None:
    """The HTTP API, health, readiness and metrics pages of a router (or all-in-one) app."""
    app = ctx.app
    web_driver: Any = app.web  # the aiohttp driver: its application takes the access-log middleware
    web_driver.web_app.middlewares.append(logs.access_middleware())
    # Inside the access log, so it logs the status of the JSON answer; aiohttp's own 404/405/413 included.
    web_driver.web_app.middlewares.append(errors.json_errors_middleware())
    web_driver.web_app.middlewares.append(request_id_middleware())

    def _ident(url: Any) -> tuple[str, int]:
        return (url.host or "", int(url.port or 80))


    async def routed(view: View, request: Request, table_name: str, key: str,
                     local: Callable[[], Awaitable[Response]]) -> Response:
        """Answer from this worker if it owns the key's partition, else forward to the owner once."""
        if request.headers.get(ROUTED_HEADER):
            return await local()
        try:
            dest = app.router.key_store(table_name, table_key(key))
        except KeyError:
            return error(view, 503, "not_ready", "partition assignment is not known yet")
        try:
            if _ident(dest) == _ident(app.conf.canonical_url):
                raise SameNode()
            routed_url = request.url.with_host(dest.host or "127.0.0.1").with_port(int(dest.port or 80))
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}
            headers[ROUTED_HEADER] = "1"
            async with app.http_client.request(method=request.method, headers=headers, url=routed_url) as response:
                return view.bytes(await response.read(), status=response.status,
                                  content_type=response.content_type or "application/json")
        except SameNode:
            return await local()


    async def user_view(view: View, request: Request, app_id: str, user_id: str, table: Any,
                        render: Callable[[Any], dict[str, Any]]) -> Response:
        """A user's row of a table, answered by the worker that owns the user's partition."""
        denied = authorize(ctx.rt, view, request, app_id)
        if denied is not None:
            return denied
        key = user_key(app_id, user_id)

        async def local() -> Response:
            body = {"app_id": app_id, "user_id": user_id, **render(table.get(table_key(key)))}
            return view.bytes(orjson.dumps(body), content_type="application/json")

        return await routed(view, request, table.name, key, local)


    def render_devices(found: dict[str, Any] | None) -> dict[str, Any]:
        return {"devices": [public_device(d) for d in sorted((found or {}).values(), key=lambda d: d["device_id"])]}


    @app.page("/v1/apps/{app_id}/users/{user_id}/devices")
    class UserDevices(View):
        async def get(self, request: Request, app_id: str, user_id: str) -> Response:
            return await user_view(self, request, app_id, user_id, ctx.tables.devices, render_devices)


    @app.page("/v1/apps/{app_id}/users/{user_id}/preferences")
    class UserPreferences(View):
        async def get(self, request: Request, app_id: str, user_id: str) -> Response:
            return await user_view(self, request, app_id, user_id, ctx.tables.preferences,
                                   lambda prefs: {"preferences": prefs or {}})


    async def accept(view: View, request: Request, app_id: str, kind: str) -> Response:
        """Validate a posted event for this app and answer 202 only once the broker has acked it."""
        denied = authorize(ctx.rt, view, request, app_id)
        if denied is not None:
            return denied
        settings = ctx.rt.settings
        limit = settings.limits.max_record_bytes
        try:
            raw = await read_body(request, limit)
            record, data = decode_body(kind, raw, app_id, settings, received_at=time.time())
        except Invalid as exc:
            return error(view, 400, exc.reason, exc.detail)
        if kind == "notification":
            key, to = record.id, ctx.topics.notifications_in
        elif kind == "event":
            key, to = record.user_id, ctx.topics.engagement_in
        else:
            key, to = record.user_id, ctx.topics.devices_in
        # The validated original goes to the input topic, so HTTP and Kafka producers take the same path.
        if kind == "notification":
            await audited_send(request, record, data)
        else:
            await (await to.send(key=key.encode(), value=orjson.dumps(data)))
        answer = {"id": key} if kind == "notification" else {"user_id": key, "device_id": record.device_id}
        if kind == "event":
            answer["notification_id"] = record.notification_id
        return view.bytes(orjson.dumps(answer), status=202, content_type="application/json")


    async def audited_send(request: Request, record: Any, data: dict[str, Any]) -> None:
        """Publish an accepted request with its request id header, then its audit record (rules.audit): the
        planner audits only records without the header, so each request has one record, and the HTTP fields
        (key fingerprint, address, user agent) come from this handler alone."""
        http: Any = request  # the aiohttp request: the middleware's request id and the peer address
        request_id = http.get("request_id") or uuid.uuid4().hex
        api_key = bearer_key(request)
        ack = await ctx.topics.notifications_in.send(key=record.id.encode(), value=orjson.dumps(data),
                                                     headers=[(REQUEST_ID_HEADER, request_id.encode())])
        await ack
        audit = audit_record(notification_id=record.id, app_id=record.app_id, target=record.target,
                             at=iso(dt.datetime.now(dt.UTC)), via="http", key_id=key_fingerprint(api_key),
                             remote=http.remote,
                             user_agent=clean_user_agent(request.headers.get("User-Agent"), (api_key,)),
                             request_id=request_id)
        await (await ctx.topics.audit.send(key=record.id.encode(), value=orjson.dumps(audit)))

    async def cancel(view: View, request: Request, app_id: str, notification_id: str) -> Response:
        """Publish a cancel record (contract §1) and answer 202 once the broker has it. Whether anything was
        left to cancel is known only to the routers: a delivered notification stays delivered."""
        denied = authorize(ctx.rt, view, request, app_id)
        if denied is not None:
            return denied
        data = {"type": "cancel", "app_id": app_id, "id": notification_id}
        try:
            parse_cancel(data, ctx.rt.settings)
        except Invalid as exc:
            return error(view, 400, exc.reason, exc.detail)
        await (await ctx.topics.notifications_in.send(key=notification_id.encode(), value=orjson.dumps(data)))
        answer = {"id": notification_id, "cancel": "accepted",
                  "detail": "devices not yet sent to get suppressed (cancelled); delivered ones are unchanged"}
        return view.bytes(orjson.dumps(answer), status=202, content_type="application/json")

    @app.page("/v1/apps/{app_id}/notifications")
    class Notifications(View):
        async def post(self, request: Request, app_id: str) -> Response:
            return await accept(self, request, app_id, "notification")


    @app.page("/v1/apps/{app_id}/events")
    class Events(View):
        async def post(self, request: Request, app_id: str) -> Response:
            return await accept(self, request, app_id, "event")


    @app.page("/v1/apps/{app_id}/devices")
    class Devices(View):
        async def post(self, request: Request, app_id: str) -> Response:
            return await accept(self, request, app_id, "device")


    progress.register(ctx, routed, lambda view, request, app_id: authorize(ctx.rt, view, request, app_id), cancel)


    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(orjson.dumps({"status": "ok"}), content_type="application/json")


    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            """Ready once this worker has an assignment and its tables have recovered."""
            tables: Any = app.tables  # the concrete TableManager has the recovery service; its type stub does not
            recovered = tables.recovery.completed.is_set()
            assigned = bool(app.assignor.assigned_actives()) if app.assignor else False
            extra = dict(ready_checks()) if ready_checks else {}
            ready = recovered and assigned and all(extra.values())
            return self.bytes(orjson.dumps({"ready": ready, "tables_recovered": recovered, "assigned": assigned,
                                            **extra}),
                              status=200 if ready else 503, content_type="application/json")


    document = openapi.document_bytes()

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(document, content_type="application/json")

    @app.page("/debug/consumer")
    class ConsumerState(View):
        async def get(self, request: Request) -> Response:
            """Where this worker's Faust consumer stands per partition: for an operator chasing a stall."""
            return self.bytes(orjson.dumps(consumer_state(app)), content_type="application/json")

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, read no further than ``limit`` + 1 bytes: a body over the record limit is the same 400
    `oversize` as a record over it on Kafka, whatever its size and whether or not it announced a length."""
    length = request.content_length
    if length is not None and length > limit:
        raise Invalid("oversize", f"request body is {length} bytes, the limit is {limit}")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise Invalid("oversize", f"request body is over the limit of {limit} bytes")
    return bytes(body)


def consumer_state(app: Any) -> dict[str, Any]:
    """Assigned, active and paused partitions, and aiokafka's fetch position per partition (private state,
    read defensively: a debugging aid, never used for decisions)."""
    consumer: Any = app.consumer

    def names(tps: Any) -> list[str]:
        return sorted(f"{tp.topic}:{tp.partition}" for tp in (tps or ()))

    state: dict[str, Any] = {
        "rebalancing": bool(app.rebalancing),
        "assigned_actives": names(app.assignor.assigned_actives() if app.assignor else ()),
        "active": names(getattr(consumer, "_active_partitions", None)),
        "paused": names(getattr(consumer, "_paused_partitions", None)),
        "acked_pending": {f"{tp.topic}:{tp.partition}": len(v) for tp, v in getattr(consumer, "_acked", {}).items()},
    }
    try:
        aio = consumer._thread._ensure_consumer()
        assignment = aio._subscription.subscription.assignment
        state["positions"] = {f"{tp.topic}:{tp.partition}": [st._position, str(st._status), st._paused]
                              for tp, st in assignment._tp_state.items()}
    except Exception as exc:
        state["positions"] = repr(exc)
    return state
