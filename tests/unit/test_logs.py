"""Worker logs: JSON lines with the bound app and notification, text for people, the access log, and the
supervisor's relaying of child output in both formats."""

from __future__ import annotations

import asyncio
import io
import logging

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pushstream import logs
from pushstream.cli.supervisor import json_tagger, prefix_tagger


def capture(fmt: str, role: str = "sender-bulk") -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(role, fmt))
    logger = logging.getLogger(f"pushstream.test.{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_json_lines_carry_the_fields_and_the_bound_context() -> None:
    logger, stream = capture("json")

    async def in_a_task() -> None:
        logs.bind(app_id="demo", notification_id="n-42")
        logger.info("sent %d", 3)

    asyncio.run(in_a_task())
    logger.warning("outside", extra={"app_id": "other"})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    first, second, third = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "sent 3" and first["level"] == "info" and first["role"] == "sender-bulk"
    assert first["logger"] == "pushstream.test.json" and first["time"].endswith("Z")
    assert (first["app_id"], first["notification_id"]) == ("demo", "n-42")
    assert second["app_id"] == "other" and "notification_id" not in second  # the task's context stayed there
    assert third["level"] == "error" and "ValueError: boom" in third["exc"]


def test_text_format_is_one_readable_line() -> None:
    logger, stream = capture("text")
    logger.info("hello", extra={"app_id": "demo"})
    line = stream.getvalue().strip()
    assert "[INFO] pushstream.test.text: hello (app_id=demo)" in line and not line.startswith("{")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        logs.log_format("xml")


async def test_access_log_has_method_path_status_duration_and_no_query_or_headers(
        caplog: pytest.LogCaptureFixture) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application(middlewares=[logs.access_middleware()])
    app.router.add_get("/v1/apps/demo/hello", hello)
    caplog.set_level(logging.DEBUG, logger="pushstream.access")
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/v1/apps/demo/hello?key=secret-in-query",
                                    headers={"Authorization": "Bearer secret-key"})
        assert response.status == 200
        assert (await client.get("/nope")).status == 404
    ok, missing = [r for r in caplog.records if r.name == "pushstream.access"]
    assert (ok.method, ok.path, ok.status) == ("GET", "/v1/apps/demo/hello", 200)  # type: ignore[attr-defined]
    assert ok.duration_ms >= 0 and missing.status == 404  # type: ignore[attr-defined]
    line = logs.JsonFormatter("router").format(ok)
    assert "secret" not in line and orjson.loads(line)["path"] == "/v1/apps/demo/hello"


def test_supervisor_tags_json_lines_with_the_role_and_wraps_other_output() -> None:
    tag = json_tagger("sender-bulk")
    tagged = orjson.loads(tag(b'{"message": "x", "level": "info"}\n'))
    assert tagged == {"message": "x", "level": "info", "role": "sender-bulk"}
    own = b'{"message": "y", "role": "sender-bulk"}\n'
    assert tag(own) == own
    wrapped = orjson.loads(tag(b"Traceback (most recent call last):\n"))
    assert wrapped["role"] == "sender-bulk" and wrapped["message"] == "Traceback (most recent call last):"
    assert wrapped["logger"] == "stdout" and wrapped["time"].endswith("Z")
    assert prefix_tagger("router")(b"hello\n") == b"[router] hello\n"


@pytest.mark.parametrize(("fmt", "kind"), [("json", logs.JsonFormatter), ("text", logs.TextFormatter)])
def test_faust_takes_the_formatter_through_its_logging_config(monkeypatch: pytest.MonkeyPatch, fmt: str,
                                                               kind: type) -> None:
    from mode.utils.logging import setup_logging

    monkeypatch.setenv(logs.FORMAT_ENV, fmt)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging(loglevel="info", logging_config=logs.faust_config("router"))
        (handler,) = root.handlers
        assert isinstance(handler.formatter, kind) and root.level == logging.INFO
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
