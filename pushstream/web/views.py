"""HTTP API: table views routed to the partition owner, health, readiness and metrics.

Faust's own table_route takes one URL parameter as the key; pushstream's keys are `app_id/user_id`, so the
routing is done here with the app's router, on the same key bytes the tables use.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from pushstream import logs, metrics
from pushstream.agents.io import Context
from pushstream.models.base import Invalid, load_json_object
from pushstream.models.engagement import parse_engagement
from pushstream.models.notifications import parse_notification
from pushstream.models.registry import parse_device_event
from pushstream.rules.keys import user_key
from pushstream.rules.registry import public_device
from pushstream.runtime import Runtime
from pushstream.tables import table_key
from pushstream.web import progress

ROUTED_HEADER = "X-Pushstream-Routed"


def error(view: View, status: int, message: str, detail: Any = None) -> Response:
    return view.bytes(orjson.dumps({"error": message, "detail": detail}), status=status,
                      content_type="application/json")


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
        raw = await request.read()
        try:
            data = load_json_object(raw, max_bytes=settings.limits.max_record_bytes)
            if data.setdefault("app_id", app_id) != app_id:
                raise Invalid("bad_field", "'app_id' in the body differs from the URL")
            if kind == "notification":
                record: Any = parse_notification(data, settings, received_at=time.time())
                key, to = record.id, ctx.topics.notifications_in
            elif kind == "event":
                record = parse_engagement(data, settings)
                key, to = record.user_id, ctx.topics.engagement_in
            else:
                record = parse_device_event(data, settings)
                key, to = record.user_id, ctx.topics.devices_in
        except Invalid as exc:
            return error(view, 400, exc.reason, exc.detail)
        # The validated original goes to the input topic, so HTTP and Kafka producers take the same path.
        ack = await to.send(key=key.encode(), value=orjson.dumps(data))
        await ack
        answer = {"id": key} if kind == "notification" else {"user_id": key, "device_id": record.device_id}
        if kind == "event":
            answer["notification_id"] = record.notification_id
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


    progress.register(ctx, routed, lambda view, request, app_id: authorize(ctx.rt, view, request, app_id))


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


    @app.page("/debug/consumer")
    class ConsumerState(View):
        async def get(self, request: Request) -> Response:
            """Where this worker's Faust consumer stands per partition: for an operator chasing a stall."""
            return self.bytes(orjson.dumps(consumer_state(app)), content_type="application/json")

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


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
