"""Fixtures for the sender tests: one credential set per test module, a fake provider and a started sender
per test, all in-process on the test's event loop.

Fixtures are registered under short names (``apns``, ``fcm``, ``webpush``, ``dev_setup``), once, by
``pytest_plugins`` in tests/conftest.py; a test module asks for them by name and imports only the helpers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from pushstream.config import ApnsSettings, FcmSettings, WebPushSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.apns.client import ApnsSender
from pushstream.providers.fcm.client import FcmSender
from pushstream.providers.webpush.client import WebPushSender
from pushstream.testing.fakes import DevSetup, FakeAPNs, FakeFCM, FakeWebPush, generate_dev_setup

VAPID_SUBJECT = "mailto:ops@example.com"
DEADLINE = 3.0  # seconds; every test send finishes far sooner unless a test provokes the deadline


def delivery_batch(platform: str, items: list[dict[str, Any]], **fields: Any) -> DeliveryBatch:
    """A DeliveryBatch for notification n-1 of app demo; ``fields`` override the defaults."""
    values: dict[str, Any] = {
        "notification_id": "n-1",
        "app_id": "demo",
        "platform": platform,
        "channel": "transactional",
        "priority": "high",
        "items": items,
        "expires_at": time.time() + 3600,
        "collapse_key": None,
    }
    values.update(fields)
    return DeliveryBatch(**values)


@pytest.fixture(scope="module", name="dev_setup")
def dev_setup_fixture(tmp_path_factory: pytest.TempPathFactory) -> DevSetup:
    return generate_dev_setup(tmp_path_factory.mktemp("senders"), apns_port=0, fcm_port=0, webpush_port=0)


@dataclass
class ApnsEnv:
    fake: FakeAPNs
    sender: ApnsSender
    settings: ApnsSettings
    setup: DevSetup


def apns_settings(setup: DevSetup, port: int, **overrides: Any) -> ApnsSettings:
    values: dict[str, Any] = {
        "key_file": setup.apns_key_file,
        "key_id": setup.apns_key_id,
        "team_id": setup.apns_team_id,
        "topic": setup.apns_topic,
        "environment": "sandbox",
        "endpoint": f"https://localhost:{port}",
        "ca_file": setup.ca_cert_file,
        "max_connections": 2,
        "timeout_seconds": DEADLINE,
    }
    values.update(overrides)
    return ApnsSettings(**values)


@pytest_asyncio.fixture(name="apns")
async def apns_fixture(dev_setup: DevSetup) -> AsyncIterator[ApnsEnv]:
    fake = FakeAPNs(dev_setup)
    await fake.start()
    settings = apns_settings(dev_setup, fake.port)
    sender = ApnsSender(settings)
    await sender.start()
    yield ApnsEnv(fake, sender, settings, dev_setup)
    await sender.close()
    await fake.stop()


@dataclass
class FcmEnv:
    fake: FakeFCM
    sender: FcmSender
    settings: FcmSettings
    setup: DevSetup


@pytest_asyncio.fixture(name="fcm")
async def fcm_fixture(dev_setup: DevSetup) -> AsyncIterator[FcmEnv]:
    fake = FakeFCM(dev_setup)
    await fake.start()
    # Same keys; the service account's token_uri now points at this fake's port.
    setup = generate_dev_setup(dev_setup.directory, apns_port=0, fcm_port=fake.port, webpush_port=0)
    settings = FcmSettings(
        credentials_file=setup.fcm_service_account_file,
        project_id=setup.fcm_project_id,
        endpoint=fake.url,
        max_connections=2,
        timeout_seconds=DEADLINE,
    )
    sender = FcmSender(settings)
    await sender.start()
    yield FcmEnv(fake, sender, settings, setup)
    await sender.close()
    await fake.stop()


@dataclass
class WebPushEnv:
    fake: FakeWebPush
    sender: WebPushSender
    settings: WebPushSettings
    setup: DevSetup


@pytest_asyncio.fixture(name="webpush")
async def webpush_fixture(dev_setup: DevSetup) -> AsyncIterator[WebPushEnv]:
    fake = FakeWebPush(dev_setup)
    await fake.start()
    settings = WebPushSettings(
        vapid_private_key_file=dev_setup.vapid_private_key_file,
        vapid_subject=VAPID_SUBJECT,
        allowed_endpoint_hosts=("127.0.0.1",),
        timeout_seconds=DEADLINE,
        max_connections=20,
    )
    sender = WebPushSender(settings)
    await sender.start()
    yield WebPushEnv(fake, sender, settings, dev_setup)
    await sender.close()
    await fake.stop()
