"""Web Push sender CPU per message: encryption alone (pywebpush vs pushstream's own), then whole sends.

    python -m benchmarks.webpush --messages 5000 [--runs 3] [--no-send]

Encryption rows (no network): ~300-byte JSON payloads, 200 subscriptions cycled over 3 push-service origins,
a fresh ephemeral key per message everywhere, VAPID signed once per origin and cached. Unless a row says
"cached keys", decoding the subscription's base64 keys is part of each message's cost. 18 sample bodies of
every method are decrypted with ``http_ece`` to prove they are valid.

Send rows: the fakes run in benchmark mode in a child process (pushstream.testing.fakes.control.FakesProcess;
VAPID still verified, bodies not decrypted); this process sends ``--messages`` pushes, each to its own
subscription, in DeliveryBatches of ``--batch`` items. Only this process's CPU counts (time.process_time);
the fake's CPU per request is shown beside it.

Every figure is the median of ``--runs`` runs, all runs shown.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import http_ece
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushstream.config import WebPushSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers import senders
from pushstream.providers.outcome import Action
from pushstream.providers.webpush.client import KEY_CACHE_SIZE
from pushstream.providers.webpush.crypto import decode_subscription_keys, encrypt
from pushstream.providers.webpush.http import HttpClient
from pushstream.providers.webpush.vapid import VapidSigner, load_vapid_key, origin_of
from pushstream.testing.fakes import subscription_keys, webpush_subscription
from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.fakes.credentials import b64url_decode, generate_dev_setup

SUBJECT = "mailto:bench@example.com"
ORIGINS = ("https://push-a.example.com", "https://push-b.example.com:8443", "https://push-c.example.com")
SEED = bytes(range(32))
SAMPLES = 18
CURVE = ec.SECP256R1()
TTL = 3600


def _payload(i: int) -> bytes:
    body = {"id": f"n-{i:08d}", "title": "Your order has shipped", "body": "Arrives Tuesday between 9 and 12. " * 4,
            "data": {"order_id": str(100000 + i), "url": f"https://shop.example.com/orders/{100000 + i}"},
            "tag": "order-updates"}
    return orjson.dumps(body)


def _median_line(name: str, runs: list[float], note: str = "") -> str:
    shown = " / ".join(f"{r:.1f}" for r in runs)
    return f"| {name} | {statistics.median(runs):.1f} | {shown} | {note} |"


def _cpu_per_message(fn: Callable[[int], object], messages: int) -> float:
    gc.collect()
    start = time.process_time()
    for i in range(messages):
        fn(i)
    return (time.process_time() - start) / messages * 1e6


# ---- encryption alone -------------------------------------------------------------------------------------

def encryption_rows(messages: int, runs: int, vapid_file: Path) -> list[str]:
    from pywebpush import WebPusher  # the old path: dev dependency only

    signer = VapidSigner(load_vapid_key(vapid_file), SUBJECT)
    subs = [webpush_subscription(ORIGINS[n % len(ORIGINS)], SEED, f"s{n}") for n in range(200)]
    payloads = [_payload(i) for i in range(200)]
    cached_keys = functools.lru_cache(maxsize=KEY_CACHE_SIZE)(decode_subscription_keys)  # as the sender has it

    def old(i: int) -> bytes:
        sub = subs[i % 200]
        headers = {"Authorization": signer.header_for(origin_of(sub["endpoint"])), "Urgency": "normal"}
        params = WebPusher(sub)._prepare_send_data(payloads[i % 200], headers=headers, ttl=TTL)
        body: bytes = params["data"]
        return body

    def new(i: int) -> bytes:
        sub = subs[i % 200]
        keys = decode_subscription_keys(sub["keys"]["p256dh"], sub["keys"]["auth"])
        assert keys is not None
        signer.header_for(origin_of(sub["endpoint"]))
        return encrypt(payloads[i % 200], keys)

    def new_cached(i: int) -> bytes:
        sub = subs[i % 200]
        keys = cached_keys(sub["keys"]["p256dh"], sub["keys"]["auth"])
        assert keys is not None
        signer.header_for(origin_of(sub["endpoint"]))
        return encrypt(payloads[i % 200], keys)

    def ec_floor(i: int) -> bytes:
        sub = subs[i % 200]
        peer = ec.EllipticCurvePublicKey.from_encoded_point(CURVE, b64url_decode(sub["keys"]["p256dh"]))
        ephemeral = ec.generate_private_key(CURVE)
        ephemeral.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return ephemeral.exchange(ec.ECDH(), peer)

    methods = [
        ("pywebpush `WebPusher(sub)._prepare_send_data` (the old sender's encryption), VAPID cached", old),
        ("pushstream `crypto.encrypt`, keys decoded per message, VAPID cached", new),
        ("pushstream `crypto.encrypt`, keys from the sender's bounded cache, VAPID cached", new_cached),
    ]
    for name, fn in methods:  # correctness first: every method's output decrypts to its plaintext
        for i in range(SAMPLES):
            sid = f"s{i % 200}"
            private_key, auth = subscription_keys(SEED, sid)
            body = fn(i)
            assert len(body) == len(payloads[i % 200]) + 103, name
            plain = http_ece.decrypt(body, private_key=private_key, auth_secret=auth, version="aes128gcm")
            assert plain == payloads[i % 200], name
    rows = []
    for name, fn in methods:
        results = [_cpu_per_message(fn, messages) for _ in range(runs)]
        rows.append(_median_line(name, results, f"{SAMPLES} samples decrypted with http_ece"))
    results = [_cpu_per_message(ec_floor, messages) for _ in range(runs)]
    rows.append(_median_line("reference: the EC part alone (decode peer key, keygen, export, ECDH)", results,
                             "the floor on OpenSSL; sending-tier-reference.md measured 58.2 on a quiet box"))
    return rows


# ---- whole sends against the fake -------------------------------------------------------------------------

def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _batches(origin: str, seed: bytes, messages: int, size: int, run: int) -> list[DeliveryBatch]:
    batches = []
    for start in range(0, messages, size):
        items = [{"user_id": f"u{i}", "device_id": f"d{i}",
                  "subscription": webpush_subscription(origin, seed, f"r{run}-{i}"),
                  "payload": orjson.loads(_payload(i))} for i in range(start, min(messages, start + size))]
        batches.append(DeliveryBatch(notification_id=f"n-{run}-{start}", app_id="bench", platform="webpush",
                                     channel="bulk", priority="normal", items=items,
                                     expires_at=time.time() + 3600, collapse_key=None))
    return batches


async def _sender_run(settings: WebPushSettings, batches: list[DeliveryBatch], warm: DeliveryBatch) -> float:
    sender = senders.create("webpush", settings, max_in_flight=settings.max_connections)
    await sender.start()
    try:
        await sender.send_batch(warm)  # connections opened and VAPID signed outside the measurement
        gc.collect()
        start = time.process_time()
        verdicts = [v for batch in batches for v in await sender.send_batch(batch)]
        cpu = time.process_time() - start
    finally:
        await sender.close()
    bad = [v for v in verdicts if v.action is not Action.DELIVERED]
    assert not bad, bad[:3]
    return cpu


async def _pywebpush_run(settings: WebPushSettings, batches: list[DeliveryBatch], warm: DeliveryBatch) -> float:
    """What the old sender did per message: pywebpush.webpush_async with a cached VAPID header."""
    from pywebpush import webpush_async

    signer = VapidSigner(load_vapid_key(settings.vapid_private_key_file), settings.vapid_subject)
    timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
    limit = asyncio.Semaphore(settings.max_connections)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=settings.max_connections),
                                     timeout=timeout) as session:
        async def one(item: dict[str, Any]) -> int:
            sub = item["subscription"]
            headers = {"Urgency": "normal", "Authorization": signer.header_for(origin_of(sub["endpoint"]))}
            async with limit:
                response = await webpush_async(sub, orjson.dumps(item["payload"]), headers=headers, ttl=TTL,
                                               timeout=timeout, aiohttp_session=session)
            return int(response.status)

        async def run(batch: DeliveryBatch) -> list[int]:
            return list(await asyncio.gather(*(one(item) for item in batch.items)))

        await run(warm)
        gc.collect()
        start = time.process_time()
        statuses = [s for batch in batches for s in await run(batch)]
        cpu = time.process_time() - start
    assert all(s == 201 for s in statuses), statuses[:3]
    return cpu


def _encrypted(signer: VapidSigner, batches: list[DeliveryBatch]) -> list[list[tuple[str, str, bytes]]]:
    out = []
    for batch in batches:
        pairs = []
        for item in batch.items:
            sub = item["subscription"]
            keys = decode_subscription_keys(sub["keys"]["p256dh"], sub["keys"]["auth"])
            assert keys is not None
            pairs.append((sub["endpoint"], signer.header_for(origin_of(sub["endpoint"])),
                          encrypt(orjson.dumps(item["payload"]), keys)))
        out.append(pairs)
    return out


async def _aiohttp_run(settings: WebPushSettings, batches: list[DeliveryBatch], warm: DeliveryBatch) -> float:
    """aiohttp alone: the same POSTs with bodies encrypted beforehand (not measured)."""
    signer = VapidSigner(load_vapid_key(settings.vapid_private_key_file), settings.vapid_subject)
    limit = asyncio.Semaphore(settings.max_connections)
    bodies, [warm_bodies] = _encrypted(signer, batches), _encrypted(signer, [warm])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=settings.max_connections),
                                     timeout=aiohttp.ClientTimeout(total=settings.timeout_seconds)) as session:
        async def one(endpoint: str, authorization: str, body: bytes) -> int:
            headers = {"TTL": str(TTL), "Urgency": "normal", "Content-Encoding": "aes128gcm",
                       "Authorization": authorization}
            async with limit, session.post(endpoint, data=body, headers=headers) as response:
                await response.read()
                return response.status

        async def run(triples: list[tuple[str, str, bytes]]) -> list[int]:
            return list(await asyncio.gather(*(one(*t) for t in triples)))

        await run(warm_bodies)
        gc.collect()
        start = time.process_time()
        statuses = [s for triples in bodies for s in await run(triples)]
        cpu = time.process_time() - start
    assert all(s == 201 for s in statuses), statuses[:3]
    return cpu


async def _lean_run(settings: WebPushSettings, batches: list[DeliveryBatch], warm: DeliveryBatch) -> float:
    """pushstream's http.py alone: the same POSTs with bodies encrypted beforehand (not measured)."""
    signer = VapidSigner(load_vapid_key(settings.vapid_private_key_file), settings.vapid_subject)
    limit = asyncio.Semaphore(settings.max_connections)
    bodies, [warm_bodies] = _encrypted(signer, batches), _encrypted(signer, [warm])
    client = HttpClient(max_connections=settings.max_connections)

    async def one(endpoint: str, authorization: str, body: bytes) -> int:
        url = urlsplit(endpoint)
        assert url.hostname is not None and url.port is not None
        head = (f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nTTL: {TTL}\r\nUrgency: normal\r\n"
                "Content-Encoding: aes128gcm\r\nContent-Type: application/octet-stream\r\n"
                f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n")
        async with limit:
            response = await client.post(url.scheme, url.hostname, url.port, head.encode("latin-1"), body)
        return response.status

    async def run(triples: list[tuple[str, str, bytes]]) -> list[int]:
        return list(await asyncio.gather(*(one(*t) for t in triples)))

    try:
        await run(warm_bodies)
        gc.collect()
        start = time.process_time()
        statuses = [s for triples in bodies for s in await run(triples)]
        cpu = time.process_time() - start
    finally:
        await client.close()
    assert all(s == 201 for s in statuses), statuses[:3]
    return cpu


def send_rows(messages: int, runs: int, batch_size: int, workdir: Path) -> list[str]:
    fakes = FakesProcess(workdir / "fakes", benchmark=True)
    client = fakes.start()
    try:
        assert fakes.endpoints is not None
        setup = client.setup()
        origin, seed = setup["webpush_origin"], bytes.fromhex(setup["webpush_seed"])
        settings = WebPushSettings(vapid_private_key_file=Path(setup["vapid_private_key_file"]),
                                   vapid_subject=SUBJECT, allowed_endpoint_hosts=("127.0.0.1",),
                                   timeout_seconds=30.0, max_connections=100)
        methods: list[tuple[str, Callable[..., Coroutine[Any, Any, float]]]] = [
            ("old path: pywebpush `webpush_async` over a shared aiohttp session, VAPID cached", _pywebpush_run),
            ("pushstream `WebPushSender` (senders.create): encryption + http.py", _sender_run),
            ("transport alone: aiohttp POSTs (bodies encrypted beforehand, not counted)", _aiohttp_run),
            ("transport alone: pushstream http.py POSTs (bodies encrypted beforehand, not counted)", _lean_run),
        ]
        rows = []
        for name, method in methods:
            results, fake_cpu = [], []
            for run in range(runs):
                batches = _batches(origin, seed, messages, batch_size, run)
                warm = _batches(origin, seed, min(batch_size, 200), batch_size, 1000 + run)[0]
                fake_before = _proc_cpu(fakes.endpoints.pid)
                cpu = asyncio.run(method(settings, batches, warm))
                fake_cpu.append((_proc_cpu(fakes.endpoints.pid) - fake_before) / (messages + len(warm.items)) * 1e6)
                results.append(cpu / messages * 1e6)
            note = f"fake ~{statistics.median(fake_cpu):.0f} µs CPU/request; all answered 201"
            rows.append(_median_line(name, results, note))
        return rows
    finally:
        fakes.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="items per DeliveryBatch in the send rows")
    parser.add_argument("--no-send", action="store_true", help="encryption rows only (no fake process)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-webpush-") as tmp:
        workdir = Path(tmp)
        setup = generate_dev_setup(workdir / "keys", apns_port=0, fcm_port=0, webpush_port=0)
        print(f"python {sys.version.split()[0]}, {args.messages} messages, median of {args.runs} runs, "
              "µs CPU per message (time.process_time)\n")
        print("| method | µs CPU / message | runs | notes |\n| --- | ---: | --- | --- |")
        for row in encryption_rows(args.messages, args.runs, setup.vapid_private_key_file):
            print(row, flush=True)
        if not args.no_send:
            for row in send_rows(args.messages, args.runs, args.batch, workdir):
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
