"""Agents and views of the router app built by `create_app`, driven without Kafka.

The app is built but never started: each agent runs under Faust's `agent.test_context()` and gets its input
through `put`; its output goes to a recording producer in place of Kafka's (the outbox hands records straight to
``app.producer``); the views are served by aiohttp's test server. The tables are RocksDB in a temporary data
dir, not Faust's ``memory://`` store: the registry and router write and read their partitions through RocksDB
directly (`pushstream.tables.batch`), which the memory store does not have. A view is asked with the routed
header, as the owner of the key's partition is: with no broker there is no assignment to route by.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pushstream.factory import create_app
from pushstream.rules.keys import partition_for, user_key
from pushstream.runtime import runtime_for
from pushstream.web.views import ROUTED_HEADER
from tests.unit.factories import API_KEY, raw_device, settings

AS_OWNER = {"Authorization": f"Bearer {API_KEY}", ROUTED_HEADER: "1"}
Sent = tuple[str, bytes | None, bytes, int | None]


class RecordingProducer:
    """What the outbox and the batched table writes call on Faust's producer, acked at once."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None, timestamp: Any,
                   headers: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value, partition))
        ack = asyncio.get_running_loop().create_future()
        ack.set_result(SimpleNamespace(offset=len(self.sent)))
        return ack

    def of(self, topic: str) -> list[Sent]:
        return [record for record in self.sent if record[0] == topic]


@pytest.fixture
def app(tmp_path: Path) -> faust.App:
    app = create_app(runtime_for(settings()), role="router", datadir=str(tmp_path / "data"))
    app.finalize()
    app.producer = RecordingProducer()  # type: ignore[assignment]
    return app


@pytest.fixture
async def client(app: Any) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(app.web.web_app)) as client:
        yield client


def producer(app: faust.App) -> RecordingProducer:
    recording: Any = app.producer
    assert isinstance(recording, RecordingProducer)
    return recording


async def until(what: str, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll (with a deadline) until the agent under test has written what ``done`` looks for."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def ingest(app: faust.App, kind: str, *values: bytes) -> list[Sent]:
    """Put producer records through an ingest agent; returns the user-events batch records it wrote."""
    recording = producer(app)
    before = len(recording.sent)
    async with app.agents[f"pushstream.ingest_{kind}"].test_context() as agent:
        for value in values:
            await agent.put(value)
        await until(f"ingest_{kind} to write", lambda: len(recording.sent) > before)
    return [r for r in recording.sent[before:] if r[0] == "pushstream.user-events"]


async def register(app: faust.App, batches: list[Sent]) -> None:
    """Put user-events batch records through the registry agent, on the partitions they were written to."""
    recording = producer(app)
    async with app.agents["pushstream.registry"].test_context() as agent:
        for _, key, value, partition in batches:
            before = len(recording.sent)

            def written(before: int = before) -> bool:
                # The registry writes its table changes (and their changelog records) last.
                return any(topic.endswith("-changelog") for topic, *_ in recording.sent[before:])

            await agent.put(value, key=key, partition=partition)
            await until("the registry's table writes", written)


async def test_a_malformed_device_record_is_dead_lettered_with_its_reason_and_source(app: faust.App) -> None:
    await ingest(app, "device", b"not json")
    [(_, _, value, _)] = producer(app).of("pushstream.dlq")
    letter = orjson.loads(value)
    assert letter["reason"] == "bad_json" and letter["value"] == "not json"
    assert producer(app).of("pushstream.user-events") == []


async def test_a_device_missing_a_field_is_dead_lettered_and_the_good_one_beside_it_goes_on(app: faust.App) -> None:
    bad = {k: v for k, v in raw_device(user_id="u-2").items() if k != "token"}
    batches = await ingest(app, "device", orjson.dumps(bad), orjson.dumps(raw_device(user_id="u-1")))
    [(_, _, value, _)] = producer(app).of("pushstream.dlq")
    assert orjson.loads(value)["reason"] == "missing_field"
    [(_, key, value, partition)] = batches
    [event] = orjson.loads(value)["events"]
    assert (event["kind"], event["type"], event["user_id"]) == ("device", "register", "u-1")
    assert partition == partition_for(user_key("demo", "u-1"), app.conf.topic_partitions)
    assert key == f"user-events/{partition}".encode()


async def test_a_registered_device_shows_in_the_devices_table_and_the_devices_view(
        app: faust.App, client: TestClient[Any, Any]) -> None:
    device = raw_device(user_id="u-1", device_id="d-1", platform="fcm", token="fcm-token-1")
    await register(app, await ingest(app, "device", orjson.dumps(device)))
    response = await client.get("/v1/apps/demo/users/u-1/devices", headers=AS_OWNER)
    assert response.status == 200
    body = await response.json()
    assert (body["app_id"], body["user_id"]) == ("demo", "u-1")
    [shown] = body["devices"]
    assert (shown["device_id"], shown["platform"], shown["status"]) == ("d-1", "fcm", "active")
    assert "token" not in shown and "fcm-token-1" not in await response.text()
    [(_, _, value, _)] = producer(app).of("pushstream.token-claims")  # the token's owner is claimed
    assert orjson.loads(value)["claims"][0]["user_id"] == "u-1"


async def test_an_unknown_user_has_no_devices(client: TestClient[Any, Any]) -> None:
    response = await client.get("/v1/apps/demo/users/nobody/devices", headers=AS_OWNER)
    assert response.status == 200 and (await response.json())["devices"] == []


async def test_a_preferences_record_updates_the_preferences_view(app: faust.App,
                                                                 client: TestClient[Any, Any]) -> None:
    first = {"app_id": "demo", "user_id": "u-1", "categories": {"price_drop": False}}
    second = {"app_id": "demo", "user_id": "u-1", "timezone": "Europe/Berlin"}
    await register(app, await ingest(app, "preference", orjson.dumps(first)))
    response = await client.get("/v1/apps/demo/users/u-1/preferences", headers=AS_OWNER)
    assert (await response.json())["preferences"]["categories"] == {"price_drop": False}
    await register(app, await ingest(app, "preference", orjson.dumps(second)))
    preferences = (await (await client.get("/v1/apps/demo/users/u-1/preferences", headers=AS_OWNER)).json())[
        "preferences"]
    assert preferences["categories"] == {"price_drop": False} and preferences["timezone"] == "Europe/Berlin"

