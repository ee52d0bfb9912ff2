"""`pushstream.testing.campaign.CampaignOutcome`: the counts a crash or fault campaign is judged by."""

from __future__ import annotations

from collections import Counter

from pushstream.testing.campaign import CampaignOutcome

DEAD, ALIVE = 40001, 40002


def outcome(killed_at: float | None = 10.0) -> CampaignOutcome:
    o = CampaignOutcome("n-1", {"a", "b", "c", "d"}, dead_ports={DEAD}, killed="worker-1", killed_at=killed_at)
    o.add_request("a", 5.0, DEAD, "/3/device/a")  # before the kill, repeated after it by the successor
    o.add_request("a", 11.0, ALIVE, "/3/device/a")
    o.add_request("b", 12.0, ALIVE, "/3/device/b")  # pushed twice after the kill by a live process
    o.add_request("b", 13.0, ALIVE, "/3/device/b")
    o.add_request("b", 14.0, ALIVE, "/3/device/b")
    o.add_request("c", 6.0, ALIVE, "/3/device/c")
    o.finals = Counter({"a": 1, "b": 2, "d": 1})  # c has no final status; d was never pushed
    o.statuses = Counter({"delivered": 4})
    return o


def test_requests_repeats_and_duplicates() -> None:
    o = outcome()
    assert (o.sent, o.repeated, o.duplicated) == (6, 2, 3)
    assert o.unexplained_duplicates == 2  # b's first two; a's repeat follows a request on the dead port


def test_what_the_kill_explains() -> None:
    o = outcome()
    assert o.killed_after == 2
    assert o.after_kill == Counter({"a": 1, "b": 3})
    assert o.repeated_after_kill == 1


def test_devices_without_a_final_status_never_pushed_and_lost() -> None:
    o = outcome()
    assert (o.without_final, o.missing_at_fakes, o.lost, o.multiple_finals) == (1, 1, 2, 1)


def test_a_fault_campaign_has_no_kill_counts_and_names_its_steps() -> None:
    o = outcome(killed_at=None)
    o.steps = ["kill-broker-2@3"]
    assert (o.killed_after, o.after_kill, o.repeated_after_kill) == (0, Counter(), 0)
    assert "faults: kill-broker-2@3" in o.summary() and "killed" not in o.summary()


def test_the_summary_of_a_crash_campaign_shows_a_repeat_after_the_kill() -> None:
    text = outcome().summary()
    assert "killed worker-1 after 2 sends" in text and "e.g. b +2.00s 40002" in text
