"""The HTTP servers' error answers and /openapi.json, through the real aiohttp applications without Kafka: a
router app is built (create_app) but never started, so only routes that answer before the broker is needed are
driven here (errors, health, the document)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pushstream.cli.sender import web_app as sender_web_app
from pushstream.factory import create_app
from pushstream.runtime import runtime_for
from pushstream.web import errors, openapi
from tests.unit.factories import API_KEY, raw_notification, settings

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def router_app() -> Any:
    return create_app(runtime_for(settings()), role="router")


@pytest.fixture
async def router(router_app: Any) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(router_app.web.web_app)) as client:
        yield client


@pytest.fixture
async def sender() -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(sender_web_app([]))) as client:
        yield client


async def json_error(response: Any, status: int, error: str) -> Any:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    return body["detail"]


# --- JSON errors ----------------------------------------------------------------------------------------------


async def test_router_unknown_route_is_a_json_404(router: TestClient[Any, Any]) -> None:
    detail = await json_error(await router.get("/v2/nothing"), 404, "not_found")
    assert detail == "no route /v2/nothing"
    await json_error(await router.post("/v1/apps/demo/nope", headers=AUTH), 404, "not_found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("POST", "/healthz", ["GET", "HEAD"]),
    ("PUT", "/v1/apps/demo/notifications", ["HEAD", "POST"]),
    ("GET", "/v1/apps/demo/devices", ["HEAD", "POST"]),
    ("PATCH", "/v1/apps/demo/users/u-1/devices", ["GET", "HEAD"]),
])
async def test_router_wrong_method_is_a_json_405_with_the_allowed_ones(
        router: TestClient[Any, Any], method: str, path: str, allowed: list[str]) -> None:
    response = await router.request(method, path, headers=AUTH)
    detail = await json_error(response, 405, "method_not_allowed")
    assert detail == {"method": method, "allowed": allowed}
    assert sorted(response.headers["Allow"].split(",")) == allowed


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "bad_json"),
    (b"[1, 2]", "bad_json"),
    (b"", "bad_json"),
    (orjson.dumps({**raw_notification(), "app_id": "other"}), "bad_field"),
])
async def test_router_bad_bodies_are_json_400s(router: TestClient[Any, Any], body: bytes, reason: str) -> None:
    for path in ("/v1/apps/demo/notifications", "/v1/apps/demo/devices"):
        await json_error(await router.post(path, data=body, headers=AUTH), 400, reason)


async def test_router_oversize_bodies_are_json_400s_read_no_further_than_the_limit(
        router: TestClient[Any, Any]) -> None:
    limit = settings().limits.max_record_bytes
    fits = orjson.dumps({**raw_notification(), "data": {"x": "y" * (limit - 400)}})
    assert len(fits) <= limit
    too_big = orjson.dumps({**raw_notification(), "data": {"x": "y" * limit}})
    # Within the record limit, the body is parsed (this one fails later, on its app: no Kafka is needed).
    other_app = orjson.dumps({**orjson.loads(fits), "app_id": "other"})
    await json_error(await router.post("/v1/apps/demo/notifications", data=other_app, headers=AUTH), 400,
                     "bad_field")
    # Announced by Content-Length; over aiohttp's own 1 MiB limit; streamed without a length (chunked).
    detail = await json_error(await router.post("/v1/apps/demo/notifications", data=too_big, headers=AUTH), 400,
                              "oversize")
    assert str(limit) in detail
    await json_error(await router.post("/v1/apps/demo/devices", data=b"x" * (2 << 20), headers=AUTH), 400,
                     "oversize")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * (limit // 2)

    await json_error(await router.post("/v1/apps/demo/notifications", data=chunks(), headers=AUTH), 400,
                     "oversize")


async def test_router_auth_errors_stay_json(router: TestClient[Any, Any]) -> None:
    await json_error(await router.get("/v1/apps/demo/dlq"), 401, "unauthorized")
    await json_error(await router.get("/v1/apps/demo/dlq", headers={"Authorization": "Bearer nope"}), 401,
                     "unauthorized")
    await json_error(await router.get("/v1/apps/other/dlq", headers=AUTH), 403, "forbidden")


async def test_sender_server_answers_json_errors(sender: TestClient[Any, Any]) -> None:
    assert (await (await sender.get("/healthz")).json()) == {"status": "ok"}
    assert await json_error(await sender.get("/nope"), 404, "not_found") == "no route /nope"
    detail = await json_error(await sender.post("/healthz"), 405, "method_not_allowed")
    assert detail == {"method": "POST", "allowed": ["GET", "HEAD"]}
    await json_error(await sender.delete("/debug/senders"), 405, "method_not_allowed")


async def test_an_uncaught_exception_is_a_json_500_and_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    async def reads(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    application = web.Application(middlewares=[errors.json_errors_middleware()], client_max_size=10)
    application.router.add_get("/broken", broken)
    application.router.add_post("/reads", reads)
    async with TestClient(TestServer(application)) as client:
        response = await client.get("/broken")
        assert await json_error(response, 500, "internal_error") is None
        assert "secret" not in await response.text()
        # aiohttp's own limit on request.read(): its 413 becomes JSON too.
        assert "10" in await json_error(await client.post("/reads", data=b"x" * 11), 413, "oversize")
    assert any("unhandled error answering GET /broken" in r.getMessage() for r in caplog.records)


# --- /openapi.json --------------------------------------------------------------------------------------------


def registered_operations(router_app: Any) -> set[tuple[str, str]]:
    """(METHOD, path) of every route the router registers; Faust adds HEAD to every view (it answers as GET,
    or 405 where GET does), so HEAD is left out of both sides."""
    ops = set()
    for route in router_app.web.web_app.router.routes():
        if route.method != "HEAD" and route.resource is not None:
            ops.add((route.method, route.resource.canonical))
    return ops


async def test_the_document_describes_exactly_the_registered_routes(router_app: Any) -> None:
    documented = {op for op in openapi.operations(openapi.document()) if op[0] != "HEAD"}
    registered = registered_operations(router_app)
    assert registered - documented == set(), "routes without a description in pushstream/web/openapi.json"
    assert documented - registered == set(), "documented routes the router does not have"


async def test_the_document_is_served_without_auth(router: TestClient[Any, Any]) -> None:
    response = await router.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.read() == openapi.document_bytes()


def test_the_document_is_openapi_3_1_with_every_reference_resolved() -> None:
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1.")
    bearer = doc["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, ref
            target = target[part]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            # /v1 needs the app's key; health, metrics, the page and this document need none.
            assert op["security"] == ([{"bearer": []}] if path.startswith("/v1/") else []), (method, path)
            assert "default" in op["responses"], (method, path)
            for name in (p["name"] for p in op.get("parameters", []) if "$ref" not in p):
                assert "{" + name + "}" in path


def test_the_schemas_name_every_status_and_platform() -> None:
    from pushstream.models.vocabulary import PLATFORMS

    schemas = openapi.document()["components"]["schemas"]
    assert tuple(schemas["Platform"]["enum"]) == PLATFORMS
    assert set(schemas["Progress"]["required"]) == {
        "id", "app_id", "targeted", "by_status", "suppressed_by_reason", "pending", "opened", "done", "variants",
        "first_at", "last_at"}
