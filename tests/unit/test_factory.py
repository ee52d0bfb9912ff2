"""The all-in-one worker's watch over its sender services (`factory.watch_services`)."""

from __future__ import annotations

import asyncio

from pushstream.factory import watch_services


async def test_a_service_loop_that_ends_outside_a_shutdown_is_a_death() -> None:
    async def dies() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("transaction stuck")

    async def runs() -> None:
        await asyncio.Event().wait()

    deaths: list[set[asyncio.Task[None]]] = []
    dead, alive = asyncio.ensure_future(dies()), asyncio.ensure_future(runs())
    await asyncio.wait_for(watch_services([dead, alive], lambda: False, deaths.append), timeout=10)
    assert deaths == [{dead}]
    assert isinstance(dead.exception(), RuntimeError)
    alive.cancel()


async def test_loops_ending_during_a_shutdown_are_no_death() -> None:
    stopping = False

    async def stops() -> None:
        nonlocal stopping
        stopping = True  # the shutdown began, then the loop ended
        await asyncio.sleep(0)

    deaths: list[set[asyncio.Task[None]]] = []
    await asyncio.wait_for(watch_services([asyncio.ensure_future(stops())], lambda: stopping, deaths.append),
                           timeout=10)
    assert deaths == []
