"""When the router may go on routing an intent after Faust's rebalancing flag said no."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from aiokafka import TopicPartition

from pushstream.agents.router import Watchdog, still_owns

TP = ("intents.bulk", 3)


def app(*, rebalancing: bool, generation: int, assigned: set[Any]) -> Any:
    return SimpleNamespace(rebalancing=rebalancing, consumer_generation_id=generation,
                           assignor=SimpleNamespace(assigned_actives=lambda: assigned))


EVENT: Any = SimpleNamespace(message=SimpleNamespace(tp=TP))  # stands in for a Faust event


async def end_rebalance(the_app: Any, *, generation: int | None = None, assigned: set[Any] | None = None) -> None:
    await asyncio.sleep(0.01)
    if generation is not None:
        the_app.consumer_generation_id = generation
    if assigned is not None:
        the_app.assignor = SimpleNamespace(assigned_actives=lambda: assigned)
    the_app.rebalancing = False


async def test_the_flag_of_the_rebalance_that_assigned_the_intent_is_waited_out() -> None:
    # Faust resumes the streams before it clears the flag: the intent was fetched in generation 7.
    the_app = app(rebalancing=True, generation=7, assigned={TP})
    ending = asyncio.create_task(end_rebalance(the_app))
    assert await still_owns(the_app, EVENT, 7) is True
    await ending


async def test_a_later_rebalance_abandons_the_intent_even_when_the_partition_comes_back() -> None:
    # Faust seeks to the committed offset after it: the intent is fetched again, so this copy must stop.
    the_app = app(rebalancing=True, generation=7, assigned={TP})
    ending = asyncio.create_task(end_rebalance(the_app, generation=8))
    assert await still_owns(the_app, EVENT, 7) is False
    await ending


async def test_a_partition_given_away_is_abandoned() -> None:
    the_app = app(rebalancing=True, generation=7, assigned={TP})
    ending = asyncio.create_task(end_rebalance(the_app, assigned=set()))
    assert await still_owns(the_app, EVENT, 7) is False
    await ending


async def test_a_rebalance_that_does_not_end_gives_up() -> None:
    the_app = app(rebalancing=True, generation=7, assigned={TP})
    assert await still_owns(the_app, EVENT, 7, timeout=0.05) is False


# The watchdog: intents Faust read but never handed to the router ---------------------------------------------
class Consumer:
    def __init__(self, positions: dict[Any, int], committed: dict[Any, int | None]) -> None:
        self.positions, self._committed_offset = positions, committed
        self.seeks: list[tuple[Any, int]] = []

    async def position(self, tp: Any) -> int | None:
        return self.positions.get(tp)

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def watched(positions: dict[Any, int], committed: dict[Any, int | None], *, rebalancing: bool = False) -> Any:
    tps = set(positions)
    return SimpleNamespace(rebalancing=rebalancing, assignor=SimpleNamespace(assigned_actives=lambda: tps),
                           consumer=Consumer(positions, committed))


TOPICS: Any = {"bulk": SimpleNamespace(get_topic_name=lambda: "intents.bulk")}
P0, P1 = TopicPartition("intents.bulk", 0), TopicPartition("intents.bulk", 1)


def idle_watchdog() -> Watchdog:
    dog = Watchdog()
    dog.idle_since["bulk"] = -1e9  # idle for ages
    return dog


def test_first_unstarted_offset() -> None:
    assert Watchdog.first_unstarted(None, None) == 0
    assert Watchdog.first_unstarted(None, 1) == 1  # committed is the next offset to read
    assert Watchdog.first_unstarted(4, 3) == 5
    assert Watchdog.first_unstarted(2, 7) == 7


async def test_an_intent_read_but_never_started_is_fetched_again() -> None:
    # A restarted worker: nothing committed, the intent at offset 0 was read (position 1), never started.
    the_app = watched({P0: 1, P1: 1}, {P0: None, P1: 1})
    await idle_watchdog().check(the_app, TOPICS)
    assert the_app.consumer.seeks == [(P0, 0)]  # P1's intent is committed: nothing to do


async def test_started_intents_and_a_busy_or_rebalancing_lane_are_left_alone() -> None:
    dog = idle_watchdog()
    dog.started("bulk", cast(Any, SimpleNamespace(message=SimpleNamespace(tp=P0, offset=0))))
    the_app = watched({P0: 1}, {P0: None})
    await dog.check(the_app, TOPICS)  # busy: the intent is being routed
    dog.finished("bulk")
    await dog.check(the_app, TOPICS)  # idle only just now
    dog.idle_since["bulk"] = -1e9
    await dog.check(the_app, TOPICS)  # started: offset 0 is not lost
    rebalancing = watched({P0: 3}, {P0: None}, rebalancing=True)
    await dog.check(rebalancing, TOPICS)
    assert the_app.consumer.seeks == [] and rebalancing.consumer.seeks == []
