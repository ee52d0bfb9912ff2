"""Real client libraries configured to talk to the fakes: the settings in code, for tests and tools."""

from __future__ import annotations

from typing import Any

import httpx
from aioapns import APNs
from aioapns.connection import APNsDevelopmentClientProtocol
from google.oauth2 import service_account

from pushstream.testing.fakes.credentials import DevSetup, client_ssl_context

FCM_SCOPES = ("https://www.googleapis.com/auth/firebase.messaging",)


def local_aioapns_client(
    setup: DevSetup, port: int, *, host: str = "localhost", key: str | None = None, **options: Any
) -> APNs:
    """An aioapns client for a FakeAPNs at host:port. Call it inside a running event loop (aioapns' pool
    grabs the loop on construction). ``key`` overrides the .p8 PEM text, e.g. to provoke a bad JWT.
    """

    class LocalAPNsProtocol(APNsDevelopmentClientProtocol):
        APNS_SERVER = host  # also the TLS server name and the 'host' header
        APNS_PORT = port
        INACTIVITY_TIME = 3600  # aioapns' default of 10 s would drop idle connections mid-test

    client = APNs(
        key=key if key is not None else setup.apns_key_file.read_text(),
        key_id=setup.apns_key_id,
        team_id=setup.apns_team_id,
        topic=setup.apns_topic,
        use_sandbox=True,
        ssl_context=client_ssl_context(setup),
        **options,
    )
    client.pool.protocol_class = LocalAPNsProtocol
    return client


def fcm_credentials(setup: DevSetup, token_url: str | None = None) -> service_account.Credentials:
    """google-auth service-account credentials whose refresh goes to the fake token endpoint."""
    credentials = service_account.Credentials.from_service_account_file(
        str(setup.fcm_service_account_file), scopes=list(FCM_SCOPES)
    )
    return credentials.with_token_uri(token_url) if token_url else credentials


def fcm_http2_client(**options: Any) -> httpx.AsyncClient:
    """httpx client that speaks HTTP/2 to the plain-http fake FCM (prior knowledge: http1 disabled)."""
    return httpx.AsyncClient(http1=False, http2=True, **options)
