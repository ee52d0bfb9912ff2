"""When the router may go on routing an intent after Faust's rebalancing flag said no."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from pushstream.agents.router import still_owns

TP = ("intents.bulk", 3)


def app(*, rebalancing: bool, generation: int, assigned: set[Any]) -> Any:
    return SimpleNamespace(rebalancing=rebalancing, consumer_generation_id=generation,
                           assignor=SimpleNamespace(assigned_actives=lambda: assigned))


EVENT = SimpleNamespace(message=SimpleNamespace(tp=TP))


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
