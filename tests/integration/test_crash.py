"""Crash safety (issue: a worker killed mid-campaign loses nothing and repeats only what was in flight).

Two real workers, 10,000 devices, one broadcast per run, one worker SIGKILLed early, in the middle and late
in its campaign and restarted on the same data dir and identity. Each run must end with every device holding
exactly one final status, nothing lost, no send made after the kill repeated, and at most the sends that were
in flight repeated: the killed process's sender transactions in progress, ≤ (bulk_sender_batches x
delivery_chunk) devices per platform it sends to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pushstream.testing.fakes.control import FakesProcess
from tests.integration.crash import PROVIDERS, campaign_with_kill, register, start_workers
from tests.integration.harness import Kafka, Worker, make_stack

USERS = 5000  # two devices each
# In flight per killed process: one bulk batch (the default bulk_sender_batches=1) of ≤ 500 devices per platform.
REPEAT_BOUND = 1 * 500 * len(PROVIDERS)


@pytest.mark.parametrize("moments", [(("early", 0.02, 0), ("middle", 0.45, 1), ("late", 0.85, 0))])
async def test_sigkill_mid_campaign_loses_nothing(tmp_path: Path, fakes: FakesProcess, workers: list[Worker],
                                                  moments: tuple[tuple[str, float, int], ...]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    start_workers(stack, workers)
    async with Kafka(stack.deployment) as kafka:
        await register(stack, kafka, workers, USERS)
        for name, kill_at, victim in moments:
            outcome = await campaign_with_kill(stack, kafka, workers, victim, notification_id=f"sale-{name}",
                                               devices=2 * USERS, kill_at=kill_at)
            print(outcome.summary())
            assert outcome.without_final == 0, outcome.summary()
            assert outcome.multiple_finals == 0, outcome.summary()
            assert set(outcome.finals) == set(outcome.requests), "a device has a status but was never pushed"
            assert outcome.repeated_after_kill == 0, outcome.summary()
            assert outcome.repeated <= REPEAT_BOUND, outcome.summary()
            assert outcome.statuses == {"delivered": 2 * USERS}, outcome.summary()
