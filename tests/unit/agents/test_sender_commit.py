"""A poll's transaction that never ends (a producer whose sender routine died after a broker restart) stops the
sender service instead of hanging it; a transaction that fails is tried again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from pushstream.agents import senders
from pushstream.agents.senders import SenderService, TransactionStuck
from pushstream.topology import load_layout
from tests.unit.factories import settings

ROOT = Path(__file__).resolve().parents[3]


class Transaction:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.producer.attempts += 1
        outcome = self.producer.outcomes.pop(0)
        if outcome == "hang":
            await asyncio.Event().wait()
        if outcome == "fail":
            raise RuntimeError("NotLeaderForPartition")
        self.producer.committed += 1


class FakeProducer:
    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes, self.attempts, self.committed = outcomes, 0, 0

    def transaction(self) -> Transaction:
        return Transaction(self)

    async def send_offsets_to_transaction(self, offsets: Any, group: str) -> None:
        return None


def service(producer: FakeProducer) -> SenderService:
    s = SenderService(settings(), load_layout(ROOT / "topics.yaml"), "bulk", platforms=["fcm"])
    s._producer = producer  # type: ignore[assignment]
    return s


async def test_a_transaction_that_never_ends_stops_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(senders, "TRANSACTION_DEADLINE", 0.05)
    producer = FakeProducer(["hang"])
    with pytest.raises(TransactionStuck):
        await service(producer)._commit([], {TopicPartition("t", 0): 1})
    assert producer.attempts == 1 and producer.committed == 0


async def test_a_failed_transaction_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(senders, "TRANSACTION_DEADLINE", 5.0)
    producer = FakeProducer(["fail", "ok"])
    await service(producer)._commit([], {TopicPartition("t", 0): 1})
    assert producer.attempts == 2 and producer.committed == 1
