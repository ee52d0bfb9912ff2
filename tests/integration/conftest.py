from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushstream.kafkatools import BrokerUnreachable, check_broker, delete_topics_with_prefix
from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import BROKER, CREATED_PREFIXES, Deployment, Worker, make_deployment

BROKER_CHECK_SECONDS = 15.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(tmp_path / "deployment")


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[FakesProcess]:
    """The fake APNs, FCM and Web Push servers in their own process, on ephemeral ports."""
    process = FakesProcess(tmp_path / "fakes")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers a test starts; all are stopped at the end, whatever happened."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    """Role processes a test starts (anything with kill()); all are killed at the end."""
    started: list[Any] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture(scope="session", autouse=True)
def kafka_broker() -> str:
    """The broker every integration test needs, asked once per session: without one, each integration test
    fails with the same one-line message (failing, not skipping: a suite that passes must have run them)."""
    async def check() -> None:
        await asyncio.wait_for(check_broker(BROKER), BROKER_CHECK_SECONDS)

    try:
        asyncio.run(check())
        reachable = True
    except (BrokerUnreachable, TimeoutError, OSError):
        reachable = False
    if not reachable:  # outside the except: the message alone, without the client's exception chained to it
        pytest.fail(f"no Kafka broker at {BROKER}; start one with scripts/kafka/ctl start", pytrace=False)
    return BROKER


@pytest.fixture(scope="session", autouse=True)
def delete_test_topics(kafka_broker: str) -> Iterator[None]:
    """Each test deployment has its own topic prefix; remove them all at the end so the broker's data dir
    does not grow with every run on the same machine."""
    yield
    asyncio.run(delete_topics_with_prefix(kafka_broker, CREATED_PREFIXES))
