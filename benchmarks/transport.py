"""Microbenchmark of the APNs / FCM send path: client CPU µs per request against the fakes (benchmark mode).

    python -m benchmarks.transport --provider apns|fcm [--requests 20000] [--concurrency 500] [--runs 3]
        [--layer sender|transport] [--compare REF]

- The fakes run in a separate process (``pushstream fakes --benchmark``); only this process's CPU time
  (user+sys, ``time.process_time``) over the measured phase counts, so a busy 2-core box disturbs it little.
- ``--layer sender`` (default) drives the real Sender (``senders.create``) with DeliveryBatches of
  ``--batch-size`` items, ``concurrency / batch-size`` batches in flight; ``--layer transport`` drives
  ``h2transport`` directly (bare HTTP/2 cost, no classification).
- Each run is its own child process (fresh interpreter, fresh fakes); the median of ``--runs`` is reported.
- ``--compare REF`` also measures the sender of git revision REF (e.g. ``main``, the aioapns/httpx senders),
  exported with ``git archive`` into a temporary directory, with the same driver.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]


def _apns_settings(setup: dict[str, Any], connections: int) -> Any:
    from pushstream.config import ApnsSettings

    return ApnsSettings(
        key_file=Path(setup["apns_key_file"]), key_id=setup["apns_key_id"], team_id=setup["apns_team_id"],
        topic=setup["apns_topic"], environment="sandbox", endpoint=setup["apns_endpoint"],
        ca_file=Path(setup["ca_cert_file"]), max_connections=connections, timeout_seconds=30.0,
    )


def _fcm_settings(setup: dict[str, Any], connections: int) -> Any:
    from pushstream.config import FcmSettings

    return FcmSettings(
        credentials_file=Path(setup["fcm_service_account_file"]), project_id=setup["fcm_project_id"],
        endpoint=setup["fcm_endpoint"], max_connections=connections, timeout_seconds=30.0,
    )


def _payload(provider: str, i: int) -> dict[str, Any]:
    """A distinct payload object per item (nothing can be cached across items)."""
    if provider == "apns":
        return {"aps": {"alert": {"title": "Shipped", "body": "Arrives Tuesday"}}, "order_id": str(i)}
    return {"notification": {"title": "Shipped", "body": "Arrives Tuesday"}, "data": {"order_id": str(i)},
            "android": {"priority": "HIGH"}}


def _items(provider: str, start: int, count: int) -> list[dict[str, Any]]:
    return [{"user_id": f"u-{i}", "device_id": f"d-{i}", "token": f"{i:064x}" if provider == "apns" else f"tok-{i}",
             "payload": _payload(provider, i)} for i in range(start, start + count)]


async def _run_sender(provider: str, setup: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from pushstream.models.internal import DeliveryBatch
    from pushstream.providers import senders

    settings = (_apns_settings if provider == "apns" else _fcm_settings)(setup, args.connections)
    sender = senders.create(provider, settings, max_in_flight=args.concurrency)
    await sender.start()

    def batch(start: int, count: int) -> DeliveryBatch:
        return DeliveryBatch(notification_id="bench", app_id="bench", platform=provider, channel="bulk",
                             priority="high", items=_items(provider, start, count), expires_at=time.time() + 3600,
                             collapse_key=None)

    try:
        # Warm-up: connections open, the JWT / OAuth token exists, APNs raised its stream limit.
        await sender.send_batch(batch(10_000_000, args.concurrency))
        per_batch = args.batch_size
        batches = [batch(i, per_batch) for i in range(0, args.requests, per_batch)]
        queue = iter(batches)
        outcomes: dict[str, int] = {}

        async def worker() -> None:
            for one in queue:
                for verdict in await sender.send_batch(one):
                    outcomes[verdict.action.value] = outcomes.get(verdict.action.value, 0) + 1

        workers = max(1, args.concurrency // per_batch)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await sender.close()
    return {"cpu": cpu, "wall": wall, "requests": sum(outcomes.values()), "outcomes": outcomes}


async def _run_transport(provider: str, setup: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Bare h2transport: the same requests the senders make, without the sender around them."""
    import ssl
    from urllib.parse import urlsplit

    from pushstream.providers.h2transport import H2Pool

    url = urlsplit(setup[f"{provider}_endpoint"])
    assert url.hostname is not None
    context = None
    if url.scheme == "https":
        context = ssl.create_default_context(cafile=setup["ca_cert_file"])
        context.set_alpn_protocols(["h2"])
    pool = H2Pool(url.hostname, url.port or 443, ssl_context=context, max_connections=args.connections,
                  connect_timeout=10)
    authority = url.netloc.encode()
    if provider == "apns":
        from pushstream.providers.apns.client import load_signing_key, shared_provider_token

        token = shared_provider_token(load_signing_key(setup["apns_key_file"]), setup["apns_key_id"],
                                      setup["apns_team_id"])
        auth = token.get_header().encode()
        body = orjson.dumps(_items("apns", 0, 1)[0]["payload"])

        def headers(i: int) -> list[tuple[bytes, bytes, bool]]:
            return [(b":method", b"POST", False), (b":scheme", b"https", False), (b":authority", authority, False),
                    (b":path", b"/3/device/%064x" % i, True), (b"apns-topic", setup["apns_topic"].encode(), False),
                    (b"apns-push-type", b"alert", False), (b"authorization", auth, False)]

        def body_of(i: int) -> bytes:
            return body
    else:
        from google.auth.transport.requests import Request
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_file(
            setup["fcm_service_account_file"], scopes=["https://www.googleapis.com/auth/firebase.messaging"])
        await asyncio.to_thread(creds.refresh, Request())
        auth = f"Bearer {creds.token}".encode()
        path = f"/v1/projects/{setup['fcm_project_id']}/messages:send".encode()
        payload = _items("fcm", 0, 1)[0]["payload"]

        def headers(i: int) -> list[tuple[bytes, bytes, bool]]:
            return [(b":method", b"POST", False), (b":scheme", b"http", False), (b":path", path, False),
                    (b":authority", authority, False), (b"content-type", b"application/json", False),
                    (b"authorization", auth, False)]

        def body_of(i: int) -> bytes:
            return orjson.dumps({"message": {**payload, "token": f"tok-{i}"}})

    statuses: dict[str, int] = {}
    counter = iter(range(args.requests))

    async def worker() -> None:
        for i in counter:
            connection = await pool.acquire()
            response = await connection.request(headers(i), body_of(i))
            statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1

    await (await pool.acquire()).request(headers(0), body_of(0))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pool.close()
    return {"cpu": cpu, "wall": wall, "requests": sum(statuses.values()), "outcomes": statuses}


def _single(args: argparse.Namespace) -> None:
    """One measured run in this process; prints one JSON line."""
    from pushstream.testing.fakes.control import FakesProcess

    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        fakes = FakesProcess(Path(tmp), benchmark=True)
        client = fakes.start()
        try:
            setup = client.setup()
            run = _run_sender if args.layer == "sender" else _run_transport
            if args.uvloop:
                import uvloop  # type: ignore[import-not-found]

                result = uvloop.run(run(args.provider, setup, args))
            else:
                result = asyncio.run(run(args.provider, setup, args))
        finally:
            fakes.stop()
    result["us_per_request"] = result["cpu"] / max(1, result["requests"]) * 1e6
    print(orjson.dumps(result).decode(), flush=True)


def _measure(args: argparse.Namespace, code_dir: Path | None, label: str) -> list[float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code_dir or ROOT), str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--single", "--provider", args.provider,
           "--requests", str(args.requests), "--concurrency", str(args.concurrency), "--layer", args.layer,
           "--batch-size", str(args.batch_size), "--connections", str(args.connections),
           *(["--uvloop"] if args.uvloop else [])]
    figures = []
    for run in range(args.runs):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            print(f"{label} run {run + 1}: failed (exit {out.returncode})\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        result = orjson.loads(lines[-1])
        figures.append(result["us_per_request"])
        print(f"{label} run {run + 1}: {result['us_per_request']:.1f} µs CPU/request, "
              f"{result['requests'] / result['wall']:.0f} requests/s wall, outcomes {result['outcomes']}", flush=True)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", choices=("apns", "fcm"), required=True)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100, help="items per DeliveryBatch (sender layer)")
    parser.add_argument("--connections", type=int, default=1, help="max_connections of the sender / pool")
    parser.add_argument("--layer", choices=("sender", "transport"), default="sender")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", metavar="REF", help="also measure the senders of this git revision")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (must be installed)")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch_size = max(1, min(args.batch_size, args.concurrency))
    if args.single:
        _single(args)
        return
    results: dict[str, list[float]] = {}
    if args.compare:
        if args.layer != "sender":
            parser.error("--compare needs --layer sender (older revisions have no h2transport)")
        with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.compare, "pushstream"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            results[args.compare] = _measure(args, Path(tmp), args.compare)
    results["this checkout"] = _measure(args, None, "this checkout")
    print(f"\n{args.provider}, {args.layer} layer, {args.requests} requests, {args.concurrency} concurrent, "
          f"{args.connections} connection(s): µs CPU per request, median of {args.runs}")
    for label, figures in results.items():
        median = f"{statistics.median(figures):.1f}" if figures else "n/a"
        runs = " / ".join(f"{f:.1f}" for f in figures)
        print(f"  {label:>14}: {median}  (runs {runs})")


if __name__ == "__main__":
    main()
