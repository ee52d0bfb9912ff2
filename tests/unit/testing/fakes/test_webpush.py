"""FakeWebPush against pywebpush: VAPID checks, aes128gcm decryption, size and subscription answers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import WebPushException, webpush_async

from pushstream.testing.fakes import DevSetup, FakeWebPush, generate_dev_setup, webpush_subscription
from pushstream.testing.fakes.credentials import b64url, load_private_key

SEED = b"fixed test seed"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> DevSetup:
    return generate_dev_setup(tmp_path_factory.mktemp("wp"), apns_port=0, fcm_port=0, webpush_port=0, seed=SEED)


@pytest_asyncio.fixture
async def webpush(setup: DevSetup) -> AsyncIterator[FakeWebPush]:
    fake = FakeWebPush(setup)
    await fake.start()
    yield fake
    await fake.stop()


async def push(
    setup: DevSetup, subscription: dict[str, Any], data: str, claims: dict[str, Any] | None = None, **kw: Any
) -> Any:
    # A fresh claims dict per call: pywebpush writes aud/exp into it (providers.md §3.4).
    return await webpush_async(
        subscription,
        data,
        vapid_private_key=str(setup.vapid_private_key_file),
        vapid_claims=claims or {"sub": "mailto:ops@example.com"},
        ttl=60,
        timeout=5,
        **kw,
    )


@pytest.mark.asyncio
async def test_deterministic_subscription_payload_is_decrypted(setup: DevSetup, webpush: FakeWebPush) -> None:
    # Built without the fake object: any process knowing the seed can do this.
    subscription = webpush_subscription(webpush.origin, SEED, "sub-1")
    payload = json.dumps({"title": "Grüße", "body": "x" * 500})

    response = await push(setup, subscription, payload, headers={"Urgency": "high"})

    assert response.status == 201 and response.headers["Location"].startswith(f"{webpush.origin}/message/")
    [record] = webpush.records
    assert record.plaintext == payload.encode() and record.json == json.loads(payload)
    assert record.key == "sub-1" and record.headers["content-encoding"] == "aes128gcm"
    assert record.headers["ttl"] == "60" and record.headers["urgency"] == "high"


@pytest.mark.asyncio
async def test_vapid_for_another_audience_is_403(setup: DevSetup, webpush: FakeWebPush) -> None:
    claims = {"sub": "mailto:ops@example.com", "aud": "https://push.example.net"}

    with pytest.raises(WebPushException) as caught:
        await push(setup, webpush.subscription("sub-1"), "hi", claims)

    assert caught.value.status_code == 403
    assert webpush.records[0].reason is not None and "aud" in webpush.records[0].reason.lower()


@pytest.mark.asyncio
async def test_vapid_expiring_beyond_24h_is_403(setup: DevSetup, webpush: FakeWebPush) -> None:
    claims = {"sub": "mailto:ops@example.com", "exp": int(time.time()) + 25 * 3600}

    with pytest.raises(WebPushException) as caught:
        await push(setup, webpush.subscription("sub-1"), "hi", claims)

    assert caught.value.status_code == 403


@pytest.mark.asyncio
async def test_oversized_body_is_413(setup: DevSetup, webpush: FakeWebPush) -> None:
    subscription = webpush.subscription("sub-1")
    assert (await push(setup, subscription, "x" * 3993)).status == 201  # RFC 8291 maximum: 4096-byte body

    with pytest.raises(WebPushException) as caught:
        await push(setup, subscription, "x" * 3994)

    assert caught.value.status_code == 413


@pytest.mark.asyncio
async def test_unsubscribed_sid_is_410_with_json(setup: DevSetup, webpush: FakeWebPush) -> None:
    webpush.unregister("gone-1")

    with pytest.raises(WebPushException) as caught:
        await push(setup, webpush.subscription("gone-1"), "hi")

    assert caught.value.status_code == 410
    assert caught.value.response is not None
    assert json.loads(await caught.value.response.text())["code"] == 410


@pytest.mark.asyncio
async def test_payload_for_foreign_keys_is_rejected(setup: DevSetup, webpush: FakeWebPush) -> None:
    foreign = webpush_subscription(webpush.origin, b"another seed", "sub-1")

    with pytest.raises(WebPushException) as caught:
        await push(setup, foreign, "hi")

    assert caught.value.status_code == 400
    assert webpush.records[0].reason == "undecryptable"


def vapid_header(setup: DevSetup, origin: str) -> str:
    key = load_private_key(setup.vapid_private_key_file)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    token = jwt.encode({"aud": origin, "exp": int(time.time()) + 3600, "sub": "mailto:a@b.c"}, key, algorithm="ES256")
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return f"vapid t={token}, k={b64url(public)}"  # with a space after the comma, unlike py_vapid


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("drop", "replace", "status"),
    [("ttl", {}, 400), (None, {"content-encoding": "aesgcm"}, 400), ("authorization", {}, 403)],
    ids=["no-ttl", "legacy-encoding", "no-vapid"],
)
async def test_header_rules(
    setup: DevSetup, webpush: FakeWebPush, drop: str | None, replace: dict[str, str], status: int
) -> None:
    headers = {
        "ttl": "0",
        "content-encoding": "aes128gcm",
        "authorization": vapid_header(setup, webpush.origin),
    }
    headers.update(replace)
    headers.pop(drop or "", None)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{webpush.origin}/push/sub-1", content=b"\0" * 100, headers=headers)

    assert response.status_code == status and response.json()["code"] == status


@pytest.mark.asyncio
async def test_scripted_429_has_retry_after(setup: DevSetup, webpush: FakeWebPush) -> None:
    webpush.script("sub-1", 429, retry_after=30, times=1)

    with pytest.raises(WebPushException) as caught:
        await push(setup, webpush.subscription("sub-1"), "hi")

    assert caught.value.status_code == 429
    assert caught.value.retry_after == "30"
    assert (await push(setup, webpush.subscription("sub-1"), "hi")).status == 201


@pytest.mark.asyncio
async def test_benchmark_mode_skips_decryption_and_records(setup: DevSetup) -> None:
    fake = FakeWebPush(setup, benchmark=True)
    await fake.start()
    try:
        foreign = webpush_subscription(fake.origin, b"another seed", "sub-1")  # not decryptable: not checked
        statuses = [(await push(setup, foreign, "hi")).status for _ in range(3)]
    finally:
        await fake.stop()

    assert statuses == [201] * 3 and fake.records == [] and fake.stats()["by_status"] == {"201": 3}
