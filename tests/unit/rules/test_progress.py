"""Campaign progress (rules.progress): each device counted once, by its latest status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pushstream.models.base import Invalid, iso
from pushstream.models.status import FINAL_STATUSES
from pushstream.rules.dead_letters import count_dead_letters, dead_letter_app
from pushstream.rules.progress import (
    STATUS_OF_CODE,
    ProgressUpdate,
    StatusItem,
    UserEntries,
    apply_statuses,
    at_millis,
    parse_status,
    progress_document,
)

BASE = at_millis("2026-11-22T18:00:00.000Z")


def record(device: str, status: str, ms: int = 0, reason: str | None = None, user: str = "u-1",
           nid: str = "n-42") -> dict[str, Any]:
    at = iso(dt.datetime.fromtimestamp((BASE + ms) / 1000, dt.UTC))
    return {"notification_id": nid, "app_id": "demo", "user_id": user, "device_id": device, "platform": "apns",
            "status": status, "reason": reason, "provider_status": None, "attempt": 1,
            "at": at}


class Progress:
    """The progress table of one notification, as the agent keeps it: a document and entries per user."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self.users: dict[str, UserEntries] = {}
        self.offset = 0

    def apply(self, *records: dict[str, Any], offset: int | None = None) -> ProgressUpdate:
        if offset is None:
            self.offset += 1
            offset = self.offset
        update = apply_statuses(self.doc, self.users, [parse_status(r) for r in records], offset=offset,
                                app_id="demo", notification_id="n-42")
        self.doc = update.doc
        self.users.update(update.users)
        return update

    def view(self) -> dict[str, Any]:
        assert self.doc is not None
        return progress_document(self.doc)


def counts(view: dict[str, Any]) -> tuple[int, dict[str, int], dict[str, int], int, bool]:
    return view["targeted"], view["by_status"], view["suppressed_by_reason"], view["pending"], view["done"]


def test_one_batch_of_final_statuses_is_done() -> None:
    p = Progress()
    p.apply(record("d-1", "delivered"), record("d-2", "delivered", 5),
            record("d-3", "suppressed", 1, "opt_out", user="u-2"), record("d-4", "invalid_token", 9, user="u-3"))
    view = p.view()
    assert view == {
        "id": "n-42", "app_id": "demo", "targeted": 4,
        "by_status": {"delivered": 2, "invalid_token": 1, "suppressed": 1},
        "suppressed_by_reason": {"opt_out": 1}, "pending": 0, "opened": 0, "open_rate": 0.0,
        "done": True, "variants": {},
        "first_at": "2026-11-22T18:00:00.000Z", "last_at": "2026-11-22T18:00:00.009Z",
    }


def test_retries_then_delivered_counts_the_device_once_as_delivered() -> None:
    p = Progress()
    p.apply(record("d-1", "retrying", 0, "503"), record("d-2", "delivered", 1))
    assert counts(p.view()) == (2, {"delivered": 1, "retrying": 1}, {}, 1, False)
    p.apply(record("d-1", "retrying", 1000, "503"))
    assert counts(p.view()) == (2, {"delivered": 1, "retrying": 1}, {}, 1, False)
    p.apply(record("d-1", "delivered", 3000))
    assert counts(p.view()) == (2, {"delivered": 2}, {}, 0, True)


def test_retries_then_dead_lettered_is_final() -> None:
    p = Progress()
    p.apply(record("d-1", "retrying", 0, "503"))
    p.apply(record("d-1", "dead_lettered", 9000, "retries_exhausted"))
    assert counts(p.view()) == (1, {"dead_lettered": 1}, {}, 0, True)


def test_deferred_is_pending_until_delivered() -> None:
    p = Progress()
    p.apply(record("d-1", "deferred", 0, "quiet_hours"), record("d-2", "delivered", 0, user="u-2"))
    assert counts(p.view()) == (2, {"deferred": 1, "delivered": 1}, {}, 1, False)
    p.apply(record("d-1", "delivered", 8 * 3600 * 1000))
    assert counts(p.view()) == (2, {"delivered": 2}, {}, 0, True)
    assert p.view()["last_at"] == "2026-11-23T02:00:00.000Z"


def test_a_record_seen_twice_changes_nothing() -> None:
    p = Progress()
    first = [record("d-1", "delivered"), record("d-2", "suppressed", 0, "frequency_cap")]
    p.apply(*first)
    before = p.view()
    update = p.apply(*first)
    assert update.users == {}
    assert p.view() == before
    # within one batch too
    q = Progress()
    q.apply(record("d-1", "delivered"), record("d-1", "delivered"))
    assert counts(q.view()) == (1, {"delivered": 1}, {}, 0, True)


def test_out_of_order_at_keeps_the_latest_status() -> None:
    p = Progress()
    p.apply(record("d-1", "delivered", 2000))
    p.apply(record("d-1", "retrying", 1000, "503"))  # older, arrives late
    assert counts(p.view()) == (1, {"delivered": 1}, {}, 0, True)
    assert p.view()["first_at"] == "2026-11-22T18:00:01.000Z"
    # reversed within a batch
    q = Progress()
    q.apply(record("d-1", "delivered", 2000), record("d-1", "retrying", 1000, "503"))
    assert counts(q.view()) == (1, {"delivered": 1}, {}, 0, True)


def test_at_the_same_millisecond_a_final_status_wins() -> None:
    p = Progress()
    p.apply(record("d-1", "delivered", 5), record("d-1", "retrying", 5, "503"))
    assert counts(p.view())[1] == {"delivered": 1}
    q = Progress()
    q.apply(record("d-1", "retrying", 5, "503"), record("d-1", "delivered", 5))
    assert counts(q.view())[1] == {"delivered": 1}


def test_a_later_final_status_replaces_an_earlier_one() -> None:
    p = Progress()
    p.apply(record("d-1", "suppressed", 0, "frequency_cap"))
    p.apply(record("d-1", "failed", 10, "BadDeviceToken"))
    assert counts(p.view()) == (1, {"failed": 1}, {}, 0, True)


def test_suppressed_reasons_are_counted_by_latest_status() -> None:
    p = Progress()
    p.apply(record("d-1", "suppressed", 0, "opt_out"), record("d-2", "suppressed", 0, "opt_out", user="u-2"),
            record("d-3", "suppressed", 0, "inactive", user="u-3"),
            record("d-4", "suppressed", 0, "expired", user="u-4"))
    assert counts(p.view()) == (4, {"suppressed": 4}, {"expired": 1, "inactive": 1, "opt_out": 2}, 0, True)
    # a suppressed device that later gets another reason moves between reasons, not counted twice
    p.apply(record("d-4", "suppressed", 10, "cancelled", user="u-4"))
    assert counts(p.view())[2] == {"cancelled": 1, "inactive": 1, "opt_out": 2}
    # and one that leaves suppressed leaves its reason
    p.apply(record("d-3", "delivered", 20, user="u-3"))
    assert counts(p.view())[1:3] == ({"delivered": 1, "suppressed": 3}, {"cancelled": 1, "opt_out": 2})


def test_a_republished_notification_does_not_turn_delivered_devices_into_duplicates() -> None:
    p = Progress()
    p.apply(record("d-1", "delivered", 0))
    p.apply(record("d-1", "suppressed", 60_000, "duplicate"))
    assert counts(p.view()) == (1, {"delivered": 1}, {}, 0, True)


def test_a_duplicate_seen_first_gives_way_to_the_real_outcome() -> None:
    p = Progress()
    p.apply(record("d-1", "suppressed", 60_000, "duplicate"))
    assert counts(p.view()) == (1, {"suppressed": 1}, {"duplicate": 1}, 0, True)
    p.apply(record("d-1", "delivered", 0))
    assert counts(p.view()) == (1, {"delivered": 1}, {}, 0, True)


def test_devices_of_one_user_are_separate_and_kept_per_user() -> None:
    p = Progress()
    update = p.apply(record("ios", "delivered"), record("web", "retrying", 0, "503"),
                     record("ios", "delivered", user="u-2"))
    assert set(update.users) == {"u-1", "u-2"}
    assert update.users["u-1"] == {"ios": ["d", BASE], "web": ["r", BASE]}
    assert counts(p.view()) == (3, {"delivered": 2, "retrying": 1}, {}, 1, False)


def test_only_users_whose_entries_changed_are_returned() -> None:
    p = Progress()
    p.apply(record("d-1", "delivered"), record("d-2", "delivered", user="u-2"))
    update = p.apply(record("d-1", "delivered"), record("d-2", "delivered", 5, user="u-2"))
    assert set(update.users) == {"u-2"}


def test_entries_are_compact() -> None:
    p = Progress()
    update = p.apply(record("d-1", "suppressed", 3, "opt_out"))
    assert update.users == {"u-1": {"d-1": ["s", BASE + 3, "opt_out"]}}


def test_a_replayed_batch_the_document_already_counted_only_repairs_entries() -> None:
    # The worker died after writing the document of batch 7 and before its entries: the replay must not count
    # the devices again, but must write their entries.
    p = Progress()
    p.apply(record("d-1", "retrying", 0, "503"), offset=6)
    stale_users = dict(p.users)
    p.apply(record("d-1", "delivered", 10), record("d-2", "delivered", 10), offset=7)
    counted = p.view()
    p.users = stale_users
    update = p.apply(record("d-1", "delivered", 10), record("d-2", "delivered", 10), offset=7)
    assert p.view() == counted
    assert update.users == {"u-1": {"d-1": ["d", BASE + 10], "d-2": ["d", BASE + 10]}}
    assert counts(p.view()) == (2, {"delivered": 2}, {}, 0, True)


def test_a_new_document_is_not_done() -> None:
    p = Progress()
    p.apply(record("d-1", "deferred", 0, "quiet_hours"))
    assert counts(p.view()) == (1, {"deferred": 1}, {}, 1, False)


@pytest.mark.parametrize("bad", [
    [], "x", {"app_id": "demo"},
    {**record("d-1", "delivered"), "status": "lost"},
    {**record("d-1", "delivered"), "at": "yesterday"},
    {**record("d-1", "delivered"), "at": "2026-11-22T18:00:00"},
    {**record("d-1", "delivered"), "device_id": 5},
    {**record("d-1", "delivered"), "notification_id": ""},
    {**record("d-1", "suppressed"), "reason": 3},
])
def test_malformed_status_records_are_invalid(bad: Any) -> None:
    with pytest.raises(Invalid):
        parse_status(bad)


def test_parse_keeps_reasons_of_suppressed_only() -> None:
    assert parse_status(record("d-1", "retrying", 0, "503")).reason is None
    item = parse_status(record("d-1", "suppressed", 0, "opt_out"))
    assert item == StatusItem("demo", "n-42", "u-1", "d-1", "s", BASE, "opt_out")
    assert StatusItem.from_list(item.as_list()) == item


def test_dead_letters_count_once_per_dlq_record() -> None:
    doc = count_dead_letters(None, [("bad_json", 0, 5), ("missing_field", 0, 6), ("bad_json", 1, 2)])
    assert doc["by_reason"] == {"bad_json": 2, "missing_field": 1}
    # a repartitioning batch sent again after a crash, then one new record
    doc = count_dead_letters(doc, [("bad_json", 0, 5), ("missing_field", 0, 6), ("bad_json", 0, 7)])
    assert doc["by_reason"] == {"bad_json": 3, "missing_field": 1}
    assert doc["seen"] == {"0": 7, "1": 2}


def test_the_app_of_a_dead_letter_comes_from_its_original_value() -> None:
    assert dead_letter_app({"value": '{"app_id": "demo", "user_id": "x"}'}) == "demo"
    assert dead_letter_app({"value": '{"notification": {"app_id": "demo"}, "user_ids": []}'}) == "demo"
    assert dead_letter_app({"value": "{not json"}) is None
    assert dead_letter_app({"value": "[1, 2]"}) is None
    assert dead_letter_app({"value": "AAEC", "value_encoding": "base64"}) is None
    assert dead_letter_app({"value": None}) is None
    assert dead_letter_app("nope") is None
    assert dead_letter_app({"value": '{"app_id": 7}'}) is None


# --- the document always agrees with the entries ---------------------------------------------------------------

_STATUSES = ["delivered", "invalid_token", "failed", "suppressed", "deferred", "retrying", "dead_lettered"]
_REASONS = [None, "opt_out", "duplicate", "quiet_hours"]


@st.composite
def _batches(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    record_st = st.builds(
        lambda device, user, status, ms, reason: record(device, status, ms, reason if status == "suppressed" else
                                                        None, user=user),
        st.sampled_from(["d-1", "d-2", "d-3"]), st.sampled_from(["u-1", "u-2"]), st.sampled_from(_STATUSES),
        st.integers(0, 4), st.sampled_from(_REASONS))
    return draw(st.lists(st.lists(record_st, min_size=1, max_size=6), min_size=1, max_size=6))


@hsettings(max_examples=300, deadline=None)
@given(_batches(), st.data())
def test_counts_always_match_the_latest_entries(batches: list[list[dict[str, Any]]], data: st.DataObject) -> None:
    p = Progress()
    for batch in batches:
        p.apply(*batch)
        if data.draw(st.booleans()):
            p.apply(*batch, offset=p.offset)  # a replay of the same batch after a crash: counts stay
        entries = [e for user in p.users.values() for d, e in user.items() if d != ""]
        view = p.view()
        by_status: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for entry in entries:
            status = STATUS_OF_CODE[entry[0]]
            by_status[status] = by_status.get(status, 0) + 1
            if status == "suppressed":
                reason = entry[2] or "unknown"
                reasons[reason] = reasons.get(reason, 0) + 1
        final = sum(1 for e in entries if STATUS_OF_CODE[e[0]] in FINAL_STATUSES)
        assert view["targeted"] == len(entries)
        assert view["by_status"] == dict(sorted(by_status.items()))
        assert view["suppressed_by_reason"] == dict(sorted(reasons.items()))
        assert view["pending"] == len(entries) - final
