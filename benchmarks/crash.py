"""N consecutive crash runs: `python -m benchmarks.crash --runs 10 [--users 5000]`.

Each run is a broadcast to 2 x users devices on two real workers, with one worker SIGKILLed at a moment
that cycles through early / middle / late and restarted; prints sent, delivered, repeated and lost per run
(see tests/integration/crash.py). Needs the local broker (scripts/kafka/ctl start).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.crash import campaign_with_kill, register, start_workers
from tests.integration.harness import Kafka, Worker, make_stack

MOMENTS = (("early", 0.02), ("middle", 0.45), ("late", 0.85))


async def run(runs: int, users: int, root: Path) -> int:
    fakes = FakesProcess(root / "fakes")
    fakes.start()
    workers: list[Worker] = []
    failures = 0
    try:
        stack = make_stack(root / "d", fakes)
        start_workers(stack, workers)
        async with Kafka(stack.deployment) as kafka:
            await register(stack, kafka, workers, users)
            print("run  moment  killed  sent   delivered  repeated  lost  repeated-after-kill")
            for n in range(runs):
                name, kill_at = MOMENTS[n % len(MOMENTS)]
                outcome = await campaign_with_kill(stack, kafka, workers, n % 2, notification_id=f"run-{n}",
                                                   devices=2 * users, kill_at=kill_at)
                print(f"{n + 1:>3}  {name:<6}  {outcome.killed:<6}  {outcome.sent:<5}  "
                      f"{outcome.statuses.get('delivered', 0):<9}  {outcome.repeated:<8}  {outcome.without_final:<4}  "
                      f"{outcome.repeated_after_kill}", flush=True)
                failures += bool(outcome.without_final or outcome.repeated_after_kill or outcome.multiple_finals)
    finally:
        for worker in workers:
            worker.kill()
        fakes.stop()
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--users", type=int, default=5000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pushstream-crash-") as tmp:
        return asyncio.run(run(args.runs, args.users, Path(tmp)))


if __name__ == "__main__":
    raise SystemExit(main())
