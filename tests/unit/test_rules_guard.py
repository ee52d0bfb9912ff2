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
    (19, 19, False),  # below min_answers: a small app's few dead tokens are believed
    (10, 20, True),  # exactly the share of exactly min_answers
    (9, 20, False),
    (0, 1000, False),
    (499, 1000, False),
    (500, 1000, True),
])
def test_share_and_minimum(invalid: int, answers: int, tripped: bool) -> None:
    assert InvalidationGuard(POLICY).observe(0.0, invalid, answers) is tripped


def test_the_window_adds_batches_and_forgets_old_ones() -> None:
    guard = InvalidationGuard(POLICY)
    assert not guard.observe(0.0, 9, 10)
    assert guard.observe(30.0, 2, 10)  # 11 of 20
    guard = InvalidationGuard(POLICY)
    assert not guard.observe(0.0, 9, 10)
    assert not guard.observe(61.0, 2, 10)  # the first batch left the window: 2 of 10


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
    assert guard.observe(5.0, 1, 1) is False  # a fresh window: a genuinely dead token is believed again


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
