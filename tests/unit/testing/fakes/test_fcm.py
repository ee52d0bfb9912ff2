"""FakeFCM against google-auth (token endpoint) and httpx over HTTP/2 (messages:send)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from pushstream.testing.fakes import DevSetup, FakeFCM, generate_dev_setup
from pushstream.testing.fakes.clients import FCM_SCOPES, fcm_credentials, fcm_http2_client
from pushstream.testing.fakes.fcm import FCM_ERROR_TYPE

TOKEN = "fcm-device-token-1"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


@pytest.fixture(scope="module")
def base_setup(tmp_path_factory: pytest.TempPathFactory) -> DevSetup:
    return generate_dev_setup(tmp_path_factory.mktemp("fcm"), apns_port=0, fcm_port=0, webpush_port=0)


@pytest_asyncio.fixture
async def fcm(base_setup: DevSetup) -> AsyncIterator[FakeFCM]:
    fake = FakeFCM(base_setup)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def setup(base_setup: DevSetup, fcm: FakeFCM) -> DevSetup:
    # Second call with the bound port: same keys, token_uri in the service account now points at the fake.
    return generate_dev_setup(base_setup.directory, apns_port=0, fcm_port=fcm.port, webpush_port=0)


async def access_token(setup: DevSetup) -> str:
    credentials = fcm_credentials(setup)
    # refresh() does blocking HTTP; the fake runs on this loop, so it must run in a thread.
    await asyncio.to_thread(credentials.refresh, google.auth.transport.requests.Request())
    return str(credentials.token)


async def send(client: httpx.AsyncClient, fcm: FakeFCM, token: str, message: dict[str, Any]) -> httpx.Response:
    return await client.post(fcm.send_url, json={"message": message}, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.asyncio
async def test_google_auth_refresh_gets_token_from_fake(setup: DevSetup, fcm: FakeFCM) -> None:
    credentials = service_account.Credentials.from_service_account_file(
        str(setup.fcm_service_account_file), scopes=list(FCM_SCOPES)
    )
    assert json.loads(setup.fcm_service_account_file.read_text())["token_uri"] == fcm.token_url

    await asyncio.to_thread(credentials.refresh, google.auth.transport.requests.Request())

    assert credentials.token.startswith("ya29.fake-") and credentials.valid
    assert fcm.token_requests == 1
    [record] = fcm.records
    assert record.path == "/token" and record.status == 200 and record.http_version == "1.1"
    assert record.json["claims"]["iss"] == setup.fcm_client_email
    assert record.json["claims"]["aud"] == "https://oauth2.googleapis.com/token"


@pytest.mark.asyncio
async def test_assertion_signed_by_another_key_is_refused(setup: DevSetup, fcm: FakeFCM) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info = {
        "client_email": setup.fcm_client_email,
        "token_uri": fcm.token_url,
        "private_key_id": setup.fcm_private_key_id,
        "private_key": stranger.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    }
    credentials = service_account.Credentials.from_service_account_info(info, scopes=list(FCM_SCOPES))

    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        await asyncio.to_thread(credentials.refresh, google.auth.transport.requests.Request())


@pytest.mark.asyncio
async def test_send_over_http2_is_accepted(setup: DevSetup, fcm: FakeFCM) -> None:
    token = await access_token(setup)
    message = {"token": TOKEN, "notification": {"title": "Hi"}, "data": {"order": "7"}}
    async with fcm_http2_client() as client:
        response = await send(client, fcm, token, message)

    assert response.status_code == 200 and response.http_version == "HTTP/2"
    assert response.json()["name"].startswith(f"projects/{setup.fcm_project_id}/messages/")
    [record] = fcm.messages
    assert record.http_version == "2" and record.key == TOKEN
    assert record.json == {"message": message}


@pytest.mark.asyncio
async def test_concurrent_sends_share_one_http2_connection(setup: DevSetup, fcm: FakeFCM) -> None:
    token = await access_token(setup)
    fcm.latency = 0.1
    async with fcm_http2_client() as client:
        responses = await asyncio.gather(*(send(client, fcm, token, {"token": f"t{i}"}) for i in range(20)))

    assert [r.status_code for r in responses] == [200] * 20
    stats = fcm.stats()
    # One HTTP/1.1 connection for the token (google-auth), one multiplexed HTTP/2 connection for the sends.
    assert stats["connections"] == 2 and stats["max_concurrent_streams"] > 1 and stats["token_requests"] == 1


@pytest.mark.asyncio
async def test_plain_http2_true_client_falls_back_to_http11(setup: DevSetup, fcm: FakeFCM) -> None:
    token = await access_token(setup)
    async with httpx.AsyncClient(http2=True) as client:
        response = await send(client, fcm, token, {"token": TOKEN})

    assert response.status_code == 200 and response.http_version == "HTTP/1.1"


@pytest.mark.asyncio
async def test_non_string_data_value_is_invalid_argument(setup: DevSetup, fcm: FakeFCM) -> None:
    token = await access_token(setup)
    async with fcm_http2_client() as client:
        response = await send(client, fcm, token, {"token": TOKEN, "data": {"ok": "1", "count": 12}})

    error = response.json()["error"]
    assert response.status_code == 400 and error["status"] == "INVALID_ARGUMENT"
    [detail] = error["details"]
    assert detail["@type"] == BAD_REQUEST
    assert detail["fieldViolations"][0]["field"] == "message.data[1].value"
    assert "(TYPE_STRING), 12" in error["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "message",
    [{"notification": {"title": "x"}}, {"token": TOKEN, "topic": "news"}],
    ids=["no-target", "two-targets"],
)
async def test_exactly_one_target_is_required(setup: DevSetup, fcm: FakeFCM, message: dict[str, Any]) -> None:
    token = await access_token(setup)
    async with fcm_http2_client() as client:
        response = await send(client, fcm, token, message)

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["@type"] == BAD_REQUEST


@pytest.mark.asyncio
async def test_oversized_message_is_invalid_argument(setup: DevSetup, fcm: FakeFCM) -> None:
    token = await access_token(setup)
    async with fcm_http2_client() as client:
        response = await send(client, fcm, token, {"token": TOKEN, "data": {"blob": "x" * 4100}})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"}]


@pytest.mark.asyncio
async def test_unregistered_token_gets_404_with_fcm_error(setup: DevSetup, fcm: FakeFCM) -> None:
    token = await access_token(setup)
    fcm.unregister(TOKEN)
    async with fcm_http2_client() as client:
        response = await send(client, fcm, token, {"token": TOKEN})

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [{"@type": FCM_ERROR_TYPE, "errorCode": "UNREGISTERED"}],
        }
    }


@pytest.mark.asyncio
async def test_scripted_quota_error_carries_retry_after(setup: DevSetup, fcm: FakeFCM) -> None:
    token = await access_token(setup)
    fcm.script(TOKEN, 429, retry_after=60, times=1)
    async with fcm_http2_client() as client:
        limited = await send(client, fcm, token, {"token": TOKEN})
        accepted = await send(client, fcm, token, {"token": TOKEN})

    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert limited.json()["error"]["details"][0]["errorCode"] == "QUOTA_EXCEEDED"
    assert accepted.status_code == 200


@pytest.mark.asyncio
async def test_missing_or_revoked_access_token_is_401_without_fcm_error(setup: DevSetup, fcm: FakeFCM) -> None:
    token = await access_token(setup)
    async with fcm_http2_client() as client:
        anonymous = await client.post(fcm.send_url, json={"message": {"token": TOKEN}})
        fcm.revoke_access_tokens()
        revoked = await send(client, fcm, token, {"token": TOKEN})

    for response in (anonymous, revoked):
        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"
        assert "details" not in response.json()["error"]


@pytest.mark.asyncio
async def test_benchmark_mode_counts_without_recording(base_setup: DevSetup) -> None:
    fake = FakeFCM(base_setup, benchmark=True)
    await fake.start()
    try:
        setup = generate_dev_setup(base_setup.directory, apns_port=0, fcm_port=fake.port, webpush_port=0)
        token = await access_token(setup)
        async with fcm_http2_client() as client:
            responses = await asyncio.gather(*(send(client, fake, token, {"token": TOKEN}) for _ in range(50)))
    finally:
        await fake.stop()

    assert {r.status_code for r in responses} == {200}
    assert fake.records == [] and fake.stats()["by_status"] == {"200": 51}
