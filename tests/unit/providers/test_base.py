"""providers.base (the sender skeleton), the shared no-answer rows and the SENDERS table, without a socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from operator import attrgetter
from typing import Any, NamedTuple

import pytest

from pushstream.models.internal import DeliveryBatch
from pushstream.models.outcome import LOCAL_KINDS, TRANSPORT_KINDS
from pushstream.models.vocabulary import PLATFORMS
from pushstream.providers import PAYLOAD_BUILDERS
from pushstream.providers.apns.classify import APNS_ANSWERS
from pushstream.providers.base import BatchSender
from pushstream.providers.fcm.classify import FCM_ANSWERS
from pushstream.providers.outcome import (
    LOCAL_BAD_ADDRESS,
    NO_ANSWER_RULES,
    TRANSPORT_ERROR,
    TRANSPORT_TIMEOUT,
    Action,
    Rule,
    Verdict,
    no_answer_rows,
)
from pushstream.providers.senders import SENDERS
from pushstream.providers.webpush.classify import WEBPUSH_ANSWERS


class Settings(NamedTuple):
    timeout_seconds: float = 5.0


class Toy(NamedTuple):
    token: str
    script: str  # "ok", "slow", "boom", "refused"


class ToySender(BatchSender[Toy]):
    """The smallest client: answers by script, records what it sent and how many ran at once."""

    platform = "toy"
    provider = "Toy"
    address = "token"
    _send_key = attrgetter("token")

    def __init__(self, *, deadline: float | None = None, max_in_flight: int = 10) -> None:
        super().__init__(Settings(), deadline=deadline, max_in_flight=max_in_flight)
        self.sent: list[str] = []
        self.running = self.most_running = 0
        self.opened = self.closed = False

    async def _open(self) -> None:
        self.opened = True

    async def _close(self) -> None:
        self.closed = True

    def _preparer(self, batch: DeliveryBatch) -> Callable[[Any], Toy | Verdict]:
        def prepare(item: dict[str, Any]) -> Toy | Verdict:
            if not item.get("token"):
                return Verdict(Action.FAILED, LOCAL_BAD_ADDRESS)
            return Toy(item["token"], item["payload"]["script"])
        return prepare

    async def _attempt(self, request: Toy) -> Verdict:
        self.sent.append(request.token)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0)
            if request.script == "slow":
                await asyncio.Event().wait()  # never answers: only the deadline ends it
            if request.script == "boom":
                raise KeyError("a library surprise")
            if request.script == "refused":
                return self.refused_after_reauth(Verdict(Action.REAUTH, "UNAUTHENTICATED", 401), "still refused")
            return Verdict(Action.DELIVERED)
        finally:
            self.running -= 1

    def _no_answer(self, kind: str, detail: str | None) -> Verdict:
        return Verdict(Action.RETRY, kind, None, None, detail)

    def _address_of(self, request: Toy) -> str:
        return request.token


def batch(*items: tuple[str, str]) -> DeliveryBatch:
    return DeliveryBatch(notification_id="n-1", app_id="demo", platform="toy", channel="transactional",
                         priority="normal", items=[
        {"user_id": "u-1", "device_id": f"d-{i}", "token": token, "payload": {"script": script}}
        for i, (token, script) in enumerate(items)])


@pytest.mark.asyncio
async def test_one_verdict_per_item_in_item_order_and_one_send_per_device():
    sender = ToySender()
    await sender.start()
    verdicts = await sender.send_batch(batch(("a", "ok"), ("", "ok"), ("b", "refused"), ("a", "ok")))
    assert [(v.action, v.reason) for v in verdicts] == [
        (Action.DELIVERED, None), (Action.FAILED, LOCAL_BAD_ADDRESS), (Action.FATAL_CONFIG, "UNAUTHENTICATED"),
        (Action.DELIVERED, None)]
    assert verdicts[2].detail == "still refused" and verdicts[2].provider_status == 401
    assert sorted(sender.sent) == ["a", "b"]  # the item without a token was never sent; "a" once
    assert sender.counters.actions == {"delivered": 2, "failed": 1, "fatal_config": 1}
    assert sum(sender.counters.latency_counts) == 2  # one latency per send, none for a local verdict


@pytest.mark.asyncio
async def test_the_deadline_and_an_exception_become_no_answer_verdicts():
    sender = ToySender(deadline=0.05)
    await sender.start()
    verdicts = await asyncio.wait_for(sender.send_batch(batch(("a", "slow"), ("b", "boom"), ("c", "ok"))), 5)
    assert [(v.action, v.reason) for v in verdicts] == [
        (Action.RETRY, TRANSPORT_TIMEOUT), (Action.RETRY, TRANSPORT_ERROR), (Action.DELIVERED, None)]
    assert verdicts[1].detail == "KeyError"
    assert sender.in_flight() == 0


@pytest.mark.asyncio
async def test_the_in_flight_limit_bounds_concurrent_sends():
    sender = ToySender(max_in_flight=2)
    await sender.start()
    await sender.send_batch(batch(*((f"t{i}", "ok") for i in range(7))))
    assert sender.most_running == 2
    assert len(sender.sent) == 7


@pytest.mark.asyncio
async def test_a_sender_not_started_or_closed_refuses_batches():
    sender = ToySender()
    with pytest.raises(RuntimeError, match=r"ToySender.start\(\) was not called"):
        await sender.send_batch(batch(("a", "ok")))
    await sender.start()
    assert sender.opened
    await sender.close()
    assert sender.closed
    with pytest.raises(RuntimeError, match=r"ToySender.start\(\) was not called"):
        await sender.send_batch(batch(("a", "ok")))


@pytest.mark.parametrize(("table", "key", "differs"), [
    (APNS_ANSWERS, lambda kind: (0, kind), {TRANSPORT_TIMEOUT, TRANSPORT_ERROR}),
    (FCM_ANSWERS, lambda kind: ("local" if kind in LOCAL_KINDS else "transport", kind), set()),
    (WEBPUSH_ANSWERS, lambda kind: (0, kind), set()),
])
def test_every_table_holds_the_shared_no_answer_rows_and_differs_only_where_it_says(table, key, differs):
    for kind in (*TRANSPORT_KINDS, *LOCAL_KINDS):
        assert (table[key(kind)] == NO_ANSWER_RULES[kind]) is (kind not in differs), kind


def test_apns_reconnects_where_it_differs():
    assert APNS_ANSWERS[(0, TRANSPORT_TIMEOUT)] == Rule(Action.RETRY, reconnect=True)
    assert APNS_ANSWERS[(0, TRANSPORT_ERROR)] == Rule(Action.RETRY, reconnect=True)


def test_no_answer_rows_cover_every_kind_under_the_tables_key():
    rows = no_answer_rows(lambda kind: ("x", kind), {TRANSPORT_TIMEOUT: Rule(Action.FAILED)})
    assert set(rows) == {("x", kind) for kind in (*TRANSPORT_KINDS, *LOCAL_KINDS)}
    assert rows[("x", TRANSPORT_TIMEOUT)] == Rule(Action.FAILED)
    assert rows[("x", TRANSPORT_ERROR)] == Rule(Action.RETRY)


def test_every_platform_has_one_sender_and_one_payload_builder():
    assert set(SENDERS) == set(PLATFORMS) == set(PAYLOAD_BUILDERS)
