from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.harness import Deployment, Worker, make_deployment


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
def delete_test_topics() -> Iterator[None]:
    """Each test deployment has its own topic prefix; remove them all at the end so the broker's data dir
    does not grow with every run on the same machine."""
    yield
    import asyncio

    from pushstream.kafkatools import delete_topics_with_prefix
    from tests.integration.harness import BROKER, CREATED_PREFIXES

    asyncio.run(delete_topics_with_prefix(BROKER, CREATED_PREFIXES))
