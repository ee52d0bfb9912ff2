"""The mass-deactivation guard: trips on a share of invalid-token answers in a window, resets on a good probe."""

from __future__ import annotations

import pytest

from pushstream.rules.guard import GuardPolicy, InvalidationGuard

POLICY = GuardPolicy(share=0.5, min_answers=20, window_seconds=60.0)


def test_a_whole_batch_of_bad_tokens_trips_it_before_any_is_acted_on() -> None:
    guard = InvalidationGuard(POLICY)
    assert guard.observe(0.0, 100, 100) is True
    assert guard.tripped and guard.trips == 1
    assert (guard.window_invalid, guard.window_answers) == (100, 100)


@pytest.mark.parametrize("invalid, answers, tripped", [
    (19, 19, True),  # below min_answers but over the share: held for the confirmation time
    (4, 4, False),  # a handful of dead tokens: believed at once
    (10, 20, True),  # exactly the share of exactly min_answers
    (9, 20, False),
    (0, 1000, False),
    (499, 1000, False),
    (500, 1000, True),
])
def test_share_and_minimum(invalid: int, answers: int, tripped: bool) -> None:
    assert InvalidationGuard(POLICY).observe(0.0, invalid, answers) is tripped


def test_the_window_adds_batches_and_forgets_old_ones() -> None:
    policy = GuardPolicy(confirm_seconds=0.0)
    guard = InvalidationGuard(policy)
    assert not guard.observe(0.0, 9, 10)
    assert guard.observe(30.0, 2, 10) and guard.tripped  # 11 of 20
    guard = InvalidationGuard(policy)
    assert not guard.observe(0.0, 9, 10)
    assert not guard.observe(61.0, 2, 10)  # the first batch left the window: 2 of 10
    assert not guard.tripped


def test_while_tripped_everything_is_held_until_a_good_probe() -> None:
    guard = InvalidationGuard(POLICY)
    guard.observe(0.0, 100, 100)
    assert guard.observe(1.0, 0, 500) is True  # not a probe (sent before it tripped): still held
    assert guard.observe(2.0, 5, 5, probe=True) is True  # the probe still says every token is bad
    assert guard.tripped
    assert guard.observe(3.0, 0, 0, probe=True) is True  # nothing answered: no evidence either way
    assert guard.observe(4.0, 1, 5, probe=True) is False  # the configuration was fixed
    assert not guard.tripped and guard.trips == 1
    assert (guard.window_invalid, guard.window_answers) == (0, 0)
    assert guard.observe(5.0, 1, 10) is False  # a fresh window: a genuinely dead token is believed again


def test_it_trips_again_after_a_reset() -> None:
    guard = InvalidationGuard(POLICY)
    guard.observe(0.0, 20, 20)
    guard.observe(1.0, 0, 5, probe=True)
    assert guard.observe(2.0, 30, 30) is True and guard.trips == 2


def test_no_answers_change_nothing() -> None:
    guard = InvalidationGuard(POLICY)
    assert guard.observe(0.0, 0, 0) is False and guard.window_answers == 0


def test_policy_rejects_values_it_cannot_use() -> None:
    for bad in ({"share": 0.0}, {"share": 1.1}, {"min_answers": 0}, {"window_seconds": 0.0}):
        with pytest.raises(ValueError):
            GuardPolicy(**bad)  # type: ignore[arg-type]


def test_too_few_answers_over_the_share_are_held_for_the_confirmation_time_then_believed() -> None:
    guard = InvalidationGuard(GuardPolicy(share=0.5, min_answers=20, window_seconds=60.0, confirm_seconds=5.0))
    assert guard.observe(0.0, 7, 7) is True and not guard.tripped  # suspicious: hold
    assert guard.hold_seconds(1.0) == 4.0
    assert guard.observe(1.0, 7, 8) is True
    assert guard.hold_seconds(4.8) == 0.5  # never a busy loop
    assert guard.observe(5.0, 1, 1) is False  # confirmation over, still too few: believed
    assert not guard.tripped


def test_a_burst_in_small_batches_trips_it_within_the_confirmation_time() -> None:
    guard = InvalidationGuard(POLICY)
    held = [guard.observe(0.1 * i, 7, 7) for i in range(4)]
    assert held == [True, True, True, True] and guard.tripped and guard.hold_seconds(1.0) is None


def test_a_share_below_the_threshold_ends_the_suspicion() -> None:
    guard = InvalidationGuard(POLICY)
    guard.observe(0.0, 6, 6)
    assert guard.suspect_since == 0.0
    assert guard.observe(1.0, 0, 10) is False and guard.suspect_since is None and guard.hold_seconds(1.0) is None


def test_no_confirmation_time_believes_small_batches_at_once() -> None:
    guard = InvalidationGuard(GuardPolicy(confirm_seconds=0.0))
    assert guard.observe(0.0, 3, 3) is False


def test_a_handful_of_dead_tokens_is_believed_until_there_are_enough_to_suspect() -> None:
    guard = InvalidationGuard(POLICY)
    assert [guard.observe(float(i), 1, 1) for i in range(6)] == [False, False, False, False, True, True]
