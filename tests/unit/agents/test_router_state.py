"""The two router lanes share each partition's ``user_state``: neither may lose the other's memory.

A lane reads a user's memory, routes, awaits the flush of its outbox, and only then writes the memory back.
The other lane may write the same user's memory during that await. ``route_event`` is driven here with two
interleaved coroutines against dict-backed tables: the transactional lane is held in its flush while the
bulk lane routes and writes the same user completely.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest

from pushstream.agents.router import route_event
from pushstream.models.values import UserState
from pushstream.rules.preferences import merge_memory, record_sent
from pushstream.tables import table_key
from pushstream.tables.batch import MergingView
from tests.unit.router_fakes import USER, FakeProducer, GatedOutbox, RocksTable, context, event

TODAY = dt.datetime.now(dt.UTC).date().isoformat()


@pytest.mark.asyncio
async def test_a_lane_waiting_in_its_flush_does_not_overwrite_the_other_lanes_memory() -> None:
    gate, flushed = asyncio.Event(), list[str]()
    outboxes = [GatedOutbox(gate, flushed, "transactional"), GatedOutbox(None, flushed, "bulk")]
    ctx, tp = context(outboxes)
    transactional = asyncio.create_task(route_event(ctx, event(tp, 1, id="n-tx", channel="transactional")))
    await asyncio.sleep(0)  # the transactional lane has read u-1's memory and waits in its flush
    assert flushed == []
    await route_event(ctx, event(tp, 2, id="n-bulk", channel="marketing", target={"user_ids": ["u-1"]}))
    assert flushed == ["bulk"]
    gate.set()
    await transactional
    memory = ctx.tables.user_state[table_key(USER)]
    assert set(memory["sent"]) == {"n-tx", "n-bulk"}
    assert memory["counts"][TODAY] == {"transactional": 1, "marketing": 1}
    assert set(memory["origins"]) == {"n-tx", "n-bulk"}


# merge_memory: the pure three-way merge behind it -------------------------------------------------------------
T0 = 1_000_000.0
BASES: list[UserState | None] = [
    None,
    {"sent": {}, "counts": {}, "origins": {}},
    record_sent(None, "n-old", "marketing", "2026-11-21", T0 - 100, "o:old"),
    record_sent(record_sent(None, "n-a", "marketing", "2026-11-22", T0 - 50, "o:a"), "n-b", None, None, T0 - 40),
]
WRITES = [
    ("n-1", "transactional", "2026-11-22", T0, "o:1"),
    ("n-2", "marketing", "2026-11-22", T0 + 1, "o:2"),
    ("n-3", None, None, T0 + 2, None),  # every device suppressed: remembered, not counted
    ("n-4", "marketing", "2026-11-23", T0 + 3, "o:4"),  # the next day
]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("mine", WRITES)
@pytest.mark.parametrize("theirs", WRITES)
def test_merge_keeps_both_writes_as_if_they_had_run_one_after_the_other(
    base: UserState | None, mine: tuple[Any, ...], theirs: tuple[Any, ...]
) -> None:
    if mine[0] == theirs[0]:
        return  # the two lanes never route the same notification id
    current = record_sent(base, *theirs)  # the other lane wrote during my await
    new = record_sent(base, *mine)  # what I computed from the memory I read
    assert merge_memory(current, base, new) == record_sent(current, *mine)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("mine", WRITES)
def test_merge_without_a_concurrent_write_is_the_new_value(base: UserState | None,
                                                           mine: tuple[Any, ...]) -> None:
    new = record_sent(base, *mine)
    assert merge_memory(base, base, new) == new


def test_merge_drops_what_the_new_value_aged_out() -> None:
    week = 7 * 24 * 3600
    base = record_sent(None, "n-old", "marketing", "2026-11-01", T0 - week - 1, "o:old")
    current = record_sent(base, "n-x", "marketing", "2026-11-22", T0 - week + 10, "o:x")
    new = record_sent(base, "n-1", "transactional", "2026-11-22", T0, "o:1")
    merged = cast(dict[str, Any], merge_memory(current, base, new))  # a memory: new is one
    assert set(merged["sent"]) == {"n-x", "n-1"} and set(merged["origins"]) == {"n-x", "n-1"}


async def test_merging_view_writes_the_merge_of_the_table_the_read_and_the_set_values() -> None:
    calls = []

    def merge(current: Any, read: Any, new: Any) -> Any:
        calls.append((current, read, new))
        return new

    table: Any = RocksTable("merging")
    db = table._db_for_partition(0)
    db[b"demo/u-1"] = orjson.dumps("read")
    view = MergingView(table, merge)
    assert view.get("demo/u-1") == "read"
    view.set("demo/u-1", "mine")
    assert view.get("demo/u-1") == "mine"
    db[b"demo/u-1"] = orjson.dumps("theirs")  # the other lane wrote meanwhile
    view.set("demo/u-2", "fresh")
    app: Any = SimpleNamespace(producer=FakeProducer())  # stands in for the Faust app
    await view.write(app, 0)
    assert calls == [("theirs", "read", "mine"), (None, None, "fresh")]
    assert (table.get(b"demo/u-1"), table.get(b"demo/u-2")) == ("mine", "fresh")


@pytest.mark.asyncio
async def test_the_router_counts_the_day_in_the_apps_default_timezone() -> None:
    """Kiritimati (UTC+14) and Pago Pago (UTC-11) are 25 hours apart: their dates always differ."""
    import dataclasses
    import zoneinfo

    from tests.unit.factories import settings

    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        base = settings()
        app_settings = dataclasses.replace(base, apps={"demo": dataclasses.replace(base.apps["demo"],
                                                                                   default_timezone=zone)})
        ctx, tp = context([GatedOutbox(None, [], "bulk")], app_settings)
        before = dt.datetime.now(zoneinfo.ZoneInfo(zone)).date().isoformat()
        await route_event(ctx, event(tp, 1, id=f"n-{zone}", channel="marketing", target={"user_ids": ["u-1"]}))
        after = dt.datetime.now(zoneinfo.ZoneInfo(zone)).date().isoformat()
        counts = ctx.tables.user_state[table_key(USER)]["counts"]
        assert set(counts) <= {before, after} and len(counts) == 1, (zone, counts)
        assert next(iter(counts.values())) == {"marketing": 1}
