"""The progress agents' glue (agents.progress) and `pushstream notifications show`'s app choice, without Kafka:
plain dicts stand in for the tables."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from pushstream.agents.progress import apply_dead_letter_counts, apply_progress, dead_letter_items
from pushstream.cli.notifications import pick_app
from pushstream.config import AppSettings, ConfigError, Settings
from pushstream.rules.progress import at_millis, status_items_of
from pushstream.tables import progress_device_key, table_key
from tests.unit.factories import settings


def event(value: Any, offset: int = 0, partition: int = 0) -> Any:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return SimpleNamespace(message=SimpleNamespace(value=raw, topic="t.pushstream.status", partition=partition,
                                                   offset=offset))


def status(device: str, state: str, reason: str | None = None, user: str = "u-1") -> dict[str, Any]:
    return {"notification_id": "n-1", "app_id": "demo", "user_id": user, "device_id": device, "platform": "fcm",
            "status": state, "reason": reason, "at": "2026-11-22T18:00:01.234Z"}


class Table(dict):  # type: ignore[type-arg]
    """A table that remembers the order of its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def __setitem__(self, key: bytes, value: Any) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)

    def update_in_order(self, changes: dict[bytes, Any]) -> None:
        for key, value in changes.items():  # write_partition writes in this order
            self[key] = value


def test_the_status_writers_hand_progress_what_it_can_count_and_leave_the_rest() -> None:
    items = status_items_of([status("d-1", "delivered"), {"app_id": "demo"},
                             {**status("d-2", "delivered"), "status": "lost"},
                             {**status("d-4", "delivered"), "at": "yesterday"},
                             {**status("d-5", "suppressed", "opt_out"), "variant": "b"}, status("d-3", "failed")])
    assert [(i.device_id, i.code, i.reason, i.variant) for i in items] == [
        ("d-1", "d", None, None), ("d-5", "s", "opt_out", "b"), ("d-3", "f", None, None)]


def test_a_batch_writes_each_document_before_its_entries() -> None:
    table = Table()
    items = [i.as_list() for i in status_items_of([status("d-1", "delivered"),
                                                   status("d-2", "suppressed", "opt_out", user="u-2")])]
    table.update_in_order(apply_progress(table, items, offset=4))  # type: ignore[arg-type]
    doc_key = table_key("demo/n-1")
    assert table.writes[0] == doc_key
    assert set(table.writes[1:]) == {progress_device_key("demo", "n-1", "u-1"),
                                      progress_device_key("demo", "n-1", "u-2")}
    assert table[doc_key]["targeted"] == 2 and table[doc_key]["applied"] == 4
    at_ms = at_millis("2026-11-22T18:00:01.234Z")
    assert table[progress_device_key("demo", "n-1", "u-2")] == {"d-2": ["s", at_ms, "opt_out"]}
    # The same batch again (a replay): nothing changes, nothing is written.
    table.writes.clear()
    assert apply_progress(table, items, offset=4) == {}  # type: ignore[arg-type]
    assert table.writes == []


def test_dead_letters_are_counted_for_configured_apps_only() -> None:
    def letter(reason: str, value: Any) -> dict[str, Any]:
        return {"reason": reason, "detail": "", "topic": "x", "partition": 0, "offset": 1, "at": "",
                "value": value if isinstance(value, str) else orjson.dumps(value).decode()}

    events = [event(letter("missing_field", {"app_id": "demo"}), 10, 1),
              event(letter("bad_json", "{nope"), 11, 1),
              event(letter("unknown_app", {"app_id": "nope"}), 12, 1),
              event(b"garbage", 13, 1),
              event(letter("internal_error", {"notification": {"app_id": "demo"}}), 14, 2)]
    items = dead_letter_items(events, lambda app_id: app_id == "demo")
    assert items == [["demo", "missing_field", 1, 10], ["demo", "internal_error", 2, 14]]
    table = Table()
    table.update_in_order(apply_dead_letter_counts(table, items))  # type: ignore[arg-type]
    # sent twice: counted once
    table.update_in_order(apply_dead_letter_counts(table, items))  # type: ignore[arg-type]
    assert table[table_key("demo")]["by_reason"] == {"internal_error": 1, "missing_field": 1}


def test_notifications_show_picks_the_only_app_or_needs_one() -> None:
    one = settings()
    assert pick_app(one, None) == next(iter(one.apps))
    two = Settings(apps={"a": AppSettings(api_keys=("k",)), "b": AppSettings(api_keys=("l",))})
    assert pick_app(two, "b") == "b"
    with pytest.raises(ConfigError, match="--app is needed"):
        pick_app(two, None)
    with pytest.raises(ConfigError, match="not in the configuration"):
        pick_app(two, "c")


def test_opens_are_written_document_first_and_counted_once_with_the_statuses() -> None:
    from pushstream.agents.progress import apply_opens_batch
    from pushstream.rules.engagement import OpenItem
    from pushstream.rules.progress import progress_document
    from pushstream.tables import progress_opened_key

    table: Any = Table()  # stands in for a Faust table
    table.update_in_order(apply_progress(table, [["demo", "n-1", "u-1", "d-1", "d", 1, None],
                                                 ["demo", "n-1", "u-1", "d-2", "d", 1, None]], offset=0))
    opens = [OpenItem("demo", "n-1", "u-1", "d-1", 5).as_list(), OpenItem("demo", "n-1", "u-1", "d-1", 6).as_list()]
    table.writes.clear()
    table.update_in_order(apply_opens_batch(table, opens, offset=1))
    assert table.writes == [table_key("demo/n-1"), progress_opened_key("demo", "n-1", "u-1")]
    # the same batch again (a crash before the commit)
    table.update_in_order(apply_opens_batch(table, opens, offset=1))
    table.update_in_order(apply_opens_batch(table, [OpenItem("demo", "n-1", "u-1", "d-2", 7).as_list(), *opens],
                                            offset=2))
    doc = progress_document(table[table_key("demo/n-1")])
    assert (doc["opened"], doc["open_rate"], doc["targeted"]) == (2, 1.0, 2)
    assert table[progress_opened_key("demo", "n-1", "u-1")] == ["d-1", "d-2"]


def test_statuses_and_opens_of_one_batch_write_the_document_once_before_every_entry() -> None:
    from pushstream.agents.progress import apply_opens_batch
    from pushstream.rules.engagement import OpenItem
    from pushstream.rules.progress import progress_document
    from pushstream.tables import progress_opened_key

    table: Any = Table()  # stands in for a Faust table
    changes = apply_progress(table, [["demo", "n-1", "u-1", "d-1", "d", 1, None]], offset=3)
    changes = apply_opens_batch(table, [OpenItem("demo", "n-1", "u-1", "d-1", 5).as_list()], offset=3,
                                changes=changes)
    assert list(changes) == [table_key("demo/n-1"), progress_device_key("demo", "n-1", "u-1"),
                             progress_opened_key("demo", "n-1", "u-1")]
    doc = progress_document(changes[table_key("demo/n-1")])
    assert (doc["by_status"], doc["opened"]) == ({"delivered": 1}, 1)


def test_bad_engagement_events_are_dead_lettered_with_their_reason() -> None:
    from pushstream.agents.progress import engagement_items

    dead: list[str] = []
    outbox = SimpleNamespace(dead_letter=lambda event, error, source: dead.append(f"{source}:{error.reason}"))
    good = {"type": "opened", "app_id": "demo", "notification_id": "n-1", "user_id": "u-1", "device_id": "d-1",
            "at": "2026-11-22T18:00:09Z"}
    ctx: Any = SimpleNamespace(rt=SimpleNamespace(settings=settings()))  # stands in for the Context
    items = engagement_items(ctx, [event(good), event(b"{not json", 1), event({**good, "type": "seen"}, 2),
                                   event({**good, "app_id": "nope"}, 3)], outbox)  # type: ignore[arg-type]
    assert [i.device_id for i in items] == ["d-1"]
    assert dead == ["engagement:bad_json", "engagement:bad_field", "engagement:unknown_app"]


def test_progress_items_by_partition_are_the_status_items_grouped_by_notification() -> None:
    from pushstream.rules.keys import by_partition
    from pushstream.rules.progress import progress_items_by_partition

    statuses = [status("d-1", "delivered"), {"app_id": "demo"}, {**status("d-2", "delivered"), "status": "lost"},
                {**status("d-4", "delivered"), "at": "yesterday"}, {**status("d-6", "delivered"), "at": 5},
                {**status("d-5", "suppressed", "opt_out"), "variant": "b"}, status("d-3", "failed"),
                {**status("d-7", "delivered"), "notification_id": "n-2"},
                {**status("d-8", "suppressed", "duplicate"), "app_id": "shop", "variant": 3}]
    for partitions in (1, 3, 12):
        expected = by_partition(status_items_of(statuses), lambda i: f"{i.app_id}/{i.notification_id}", partitions)
        assert progress_items_by_partition(statuses, partitions) == {
            p: [i.as_list() for i in items] for p, items in expected.items()}


def test_opens_are_counted_per_variant_of_the_user_that_opened() -> None:
    from pushstream.agents.progress import apply_opens_batch
    from pushstream.rules.progress import progress_document

    table = Table()
    statuses = [{**status("d-1", "delivered", user="u-1"), "variant": "a"},
                {**status("d-2", "delivered", user="u-1"), "variant": "a"},
                {**status("d-3", "delivered", user="u-2"), "variant": "b"},
                {**status("d-4", "delivered", user="u-3"), "variant": "b"}]
    items = [i.as_list() for i in status_items_of(statuses)]
    table.update_in_order(apply_progress(table, items, offset=1))  # type: ignore[arg-type]
    opens = [["demo", "n-1", "u-1", "d-1", 1], ["demo", "n-1", "u-1", "d-1", 2],  # the same device twice
             ["demo", "n-1", "u-1", "d-2", 3], ["demo", "n-1", "u-2", "d-3", 4], ["demo", "n-1", "u-9", "d-9", 5]]
    table.update_in_order(apply_opens_batch(table, opens, offset=2))  # type: ignore[arg-type]
    doc = progress_document(table[table_key("demo/n-1")])
    assert doc["opened"] == 4  # u-9 has no status: its open counts, but in no variant
    assert doc["variants"] == {"a": {"targeted": 2, "delivered": 2, "opened": 2},
                               "b": {"targeted": 2, "delivered": 2, "opened": 1}}
    # Replayed: nothing more is counted.
    table.update_in_order(apply_opens_batch(table, opens, offset=2))  # type: ignore[arg-type]
    assert progress_document(table[table_key("demo/n-1")])["variants"]["a"]["opened"] == 2
