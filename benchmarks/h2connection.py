"""CPU per request of the HTTP/2 client alone: ``H2Connection.request`` and the ``data_received`` of its answer,
over a fake transport in this process (no socket, no TLS, no peer process), so a busy box disturbs it little.

    python -m benchmarks.h2connection [--requests 20000] [--concurrency 500] [--runs 5] [--compare REF]

Each run sends ``--requests`` APNs-shaped requests, ``--concurrency`` at a time; the answers (``:status 200``,
one indexed HPACK byte each) and a connection WINDOW_UPDATE come back in 16 KiB reads, as from TLS. What
``benchmarks.transport --layer transport`` adds on top is the socket, TLS and the fake's process; this is the
part that ``providers/h2state.py`` and ``h2transport.H2Connection`` decide. ``--compare REF`` also measures the
``pushstream`` of git revision REF (exported with ``git archive``), runs interleaved.
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

ROOT = Path(__file__).resolve().parents[1]
HEADERS = [(b":method", b"POST", False), (b":scheme", b"https", False), (b":authority", b"api.push.test", False),
           (b":path", b"/3/device/" + b"a" * 64, True), (b"apns-topic", b"com.example", False),
           (b"apns-id", b"0" * 36, True), (b"authorization", b"bearer " + b"x" * 230, False)]
BODY = b'{"aps":{"alert":{"title":"Shipped","body":"Arrives Tuesday"}},"order_id":"1"}'


class _Transport:
    """What H2Connection uses of an asyncio transport; writes are counted and dropped."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _run(requests: int, concurrency: int) -> float:
    from pushstream.providers import h2transport as h2t

    loop = asyncio.get_running_loop()
    connection = h2t.H2Connection(loop)
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    connection.data_received(h2t.frame(h2t.SETTINGS, 0, 0, (3).to_bytes(2, "big") + (1000).to_bytes(4, "big")))
    await connection.ready
    next_id = 1
    cpu = time.process_time()
    for _ in range(requests // concurrency):
        tasks = [loop.create_task(connection.request(HEADERS, BODY)) for _ in range(concurrency)]
        await asyncio.sleep(0)  # every request submitted
        answers = h2t.frame(h2t.WINDOW_UPDATE, 0, 0, (concurrency * len(BODY)).to_bytes(4, "big")) + b"".join(
            h2t.frame(h2t.HEADERS, h2t.END_HEADERS | h2t.END_STREAM, next_id + 2 * i, b"\x88")
            for i in range(concurrency))
        next_id += 2 * concurrency
        for at in range(0, len(answers), 16384):
            connection.data_received(answers[at : at + 16384])
        for task in tasks:
            assert (await task).status == 200
    return (time.process_time() - cpu) / (requests // concurrency * concurrency) * 1e6


def _single(args: argparse.Namespace) -> None:
    print(f"{asyncio.run(_run(args.requests, args.concurrency)):.2f}", flush=True)


def _once(args: argparse.Namespace, code_dir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(code_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--single", "--requests", str(args.requests),
                          "--concurrency", str(args.concurrency)], env=env, capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir())
    return float(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", metavar="REF", help="also measure the pushstream of this git revision")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.concurrency = max(1, min(args.concurrency, args.requests))
    if args.single:
        _single(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-h2-") as tmp:
        sides = {"this checkout": ROOT}
        if args.compare:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.compare, "pushstream"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            sides = {args.compare: Path(tmp), **sides}
        figures: dict[str, list[float]] = {label: [] for label in sides}
        for run in range(args.runs):
            for label, code_dir in sides.items():
                figures[label].append(_once(args, code_dir))
                print(f"{label} run {run + 1}: {figures[label][-1]:.2f} µs CPU/request", flush=True)
    print(f"\nH2Connection alone, {args.requests} requests, {args.concurrency} concurrent: µs CPU per request, "
          f"median of {args.runs}")
    for label, values in figures.items():
        print(f"  {label:>14}: {statistics.median(values):.2f}  (runs {' / '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
