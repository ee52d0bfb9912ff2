"""Fake APNs, FCM and Web Push servers for local development, load tests and integration tests.

In-process: ``FakeAPNs``, ``FakeFCM``, ``FakeWebPush`` (``await start()``, ``.port``, ``.url``,
``await stop()``), built from a ``DevSetup`` made by ``generate_dev_setup``. Out of process:
``python -m pushstream.testing.fakes`` (``main``), driven through ``FakesProcess`` / ``FakesClient``.
"""

from pushstream.testing.fakes.apns import FakeAPNs
from pushstream.testing.fakes.base import FakeProvider, RecordedRequest
from pushstream.testing.fakes.control import FakesClient, FakesEndpoints, FakesProcess
from pushstream.testing.fakes.credentials import DevSetup, client_ssl_context, generate_dev_setup
from pushstream.testing.fakes.fcm import FakeFCM
from pushstream.testing.fakes.server import main, run_fakes
from pushstream.testing.fakes.webpush import FakeWebPush, subscription_keys, webpush_subscription

__all__ = [
    "DevSetup",
    "FakeAPNs",
    "FakeFCM",
    "FakeProvider",
    "FakeWebPush",
    "FakesClient",
    "FakesEndpoints",
    "FakesProcess",
    "RecordedRequest",
    "client_ssl_context",
    "generate_dev_setup",
    "main",
    "run_fakes",
    "subscription_keys",
    "webpush_subscription",
]
