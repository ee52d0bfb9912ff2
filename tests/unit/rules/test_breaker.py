"""The circuit breaker's state machine over an injected clock, the hold rule and held batch ids. Pure, no Kafka."""

from __future__ import annotations

import itertools

import pytest

from pushstream.models.internal import DeliveryBatch
from pushstream.providers.outcome import TRANSPORT_KINDS, Action, Verdict
from pushstream.rules.breaker import (
    CIRCUIT_OPEN,
    RATE_LIMITED,
    BreakerPolicy,
    CircuitBreaker,
    State,
    held_batch_id,
    held_verdict,
    hold,
    is_answer,
    is_failure,
)

POLICY = BreakerPolicy(failure_rate=0.5, min_answers=20, window_seconds=10.0, consecutive_failures=10,
                       open_seconds=2.0, max_open_seconds=8.0, probe_size=5)


def opened(now: float = 0.0) -> CircuitBreaker:
    breaker = CircuitBreaker(POLICY)
    breaker.record(now, 10, 10)
    assert breaker.state is State.OPEN
    return breaker


@pytest.mark.parametrize("verdict, failure", [
    (Verdict(Action.RETRY, "Unavailable", 503), True),
    (Verdict(Action.RETRY, "InternalServerError", 500), True),
    (Verdict(Action.RETRY, "TooManyRequests", 429), False),  # the rate limiter's business
    (Verdict(Action.RETRY, "QUOTA_EXCEEDED", 429), False),
    (Verdict(Action.INVALID_TOKEN, "BadDeviceToken", 400), False),  # a healthy provider's per-device answer
    (Verdict(Action.DELIVERED, None, 200), False),
    (Verdict(Action.FAILED, "PayloadTooLarge", 413), False),
    (Verdict(Action.REAUTH, "ExpiredProviderToken", 403), False),
    (held_verdict(CIRCUIT_OPEN, 2.0), False),
    (held_verdict(RATE_LIMITED, 2.0), False),
    (None, False),
    *[(Verdict(Action.RETRY, kind), True) for kind in TRANSPORT_KINDS],
])
def test_what_counts_as_a_provider_failure(verdict: Verdict | None, failure: bool) -> None:
    assert is_failure(verdict) is failure


def test_held_and_unconfigured_devices_are_not_answers() -> None:
    assert not is_answer(None) and not is_answer(held_verdict(CIRCUIT_OPEN, 1.0))
    assert is_answer(Verdict(Action.INVALID_TOKEN, "BadDeviceToken", 400))


def test_closed_admits_everything_and_successes_keep_it_closed() -> None:
    breaker = CircuitBreaker(POLICY)
    for t in range(100):
        assert breaker.admit(float(t), 500) == 500
        breaker.record(float(t), 0, 500)
    assert breaker.state is State.CLOSED and breaker.opened == 0


def test_consecutive_failures_open_it() -> None:
    breaker = CircuitBreaker(POLICY)
    for t in range(9):
        breaker.record(float(t) * 100, 1, 1)  # far apart: the window never holds 20
        assert breaker.state is State.CLOSED
    breaker.record(900.0, 1, 1)
    assert breaker.state is State.OPEN and breaker.opened == 1
    assert breaker.probe_at == 902.0


def test_a_success_in_between_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(POLICY)
    for t in range(30):
        breaker.record(float(t) * 100, 9, 9)
        breaker.record(float(t) * 100 + 1, 0, 1)
    assert breaker.state is State.CLOSED


def test_a_mixed_batch_counts_only_its_failures_as_consecutive() -> None:
    breaker = CircuitBreaker(POLICY)
    breaker.record(0.0, 8, 9)  # a success among them: 8 in a row at most
    breaker.record(100.0, 1, 1)
    assert breaker.state is State.CLOSED
    breaker.record(200.0, 1, 1)
    assert breaker.state is State.OPEN


def test_the_error_rate_over_the_window_opens_it() -> None:
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=1000, min_answers=20, failure_rate=0.5))
    breaker.record(0.0, 5, 10)
    assert breaker.state is State.CLOSED  # 10 answers: below min_answers
    breaker.record(1.0, 4, 10)
    assert breaker.state is State.CLOSED  # 9 of 20
    breaker.record(2.0, 2, 2)
    assert breaker.state is State.OPEN  # 11 of 22


def test_the_window_forgets_old_answers() -> None:
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=1000, min_answers=20, window_seconds=10.0))
    breaker.record(0.0, 15, 15)
    breaker.record(11.0, 0, 4)
    breaker.record(12.0, 3, 16)  # with the first batch it would be 18 of 35; without it 3 of 20
    assert breaker.state is State.CLOSED


def test_open_admits_nothing_until_the_probe_then_one_small_probe() -> None:
    breaker = opened(0.0)
    assert breaker.admit(1.9, 500) == 0
    assert breaker.retry_in(1.0) == 1.0
    assert breaker.admit(2.0, 500) == 5
    assert breaker.state is State.HALF_OPEN
    assert breaker.admit(2.1, 500) == 0  # one probe at a time
    assert breaker.admit(2.1, 3) == 0
    assert breaker.retry_in(2.1) == POLICY.open_seconds


def test_a_probe_without_failures_closes_it() -> None:
    breaker = opened(0.0)
    assert breaker.admit(2.0, 3) == 3
    breaker.record(2.5, 0, 3)
    assert breaker.state is State.CLOSED and not breaker.is_open
    assert breaker.admit(2.6, 500) == 500


def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() -> None:
    breaker = opened(0.0)
    waits = []
    now = 0.0
    for _ in range(5):
        now = breaker.probe_at
        assert breaker.admit(now, 500) == 5
        breaker.record(now, 1, 5)
        assert breaker.state is State.OPEN
        waits.append(breaker.probe_at - now)
    assert waits == [4.0, 8.0, 8.0, 8.0, 8.0]
    breaker.admit(breaker.probe_at, 5)
    breaker.record(breaker.probe_at, 0, 5)
    assert breaker.state is State.CLOSED
    breaker.record(100.0, 10, 10)  # opens again with the base wait
    assert breaker.probe_at == 102.0 and breaker.opened == 2


def test_answers_of_batches_sent_before_it_opened_change_nothing() -> None:
    breaker = opened(0.0)
    breaker.record(0.5, 0, 500)
    assert breaker.state is State.OPEN and breaker.probe_at == 2.0
    breaker.admit(2.0, 5)
    breaker.record(2.1, 0, 0)  # nothing answered: not the probe's result
    assert breaker.state is State.HALF_OPEN


def test_a_probe_never_answered_is_given_up_after_max_open_seconds() -> None:
    breaker = opened(0.0)
    assert breaker.admit(2.0, 5) == 5
    assert breaker.admit(9.9, 5) == 0
    assert breaker.admit(10.0, 5) == 5


def test_trip_opens_a_closed_breaker_and_lengthens_a_half_open_one() -> None:
    breaker = CircuitBreaker(POLICY)
    breaker.trip(0.0)
    assert breaker.state is State.OPEN and breaker.probe_at == 2.0
    breaker.trip(1.0)
    assert breaker.probe_at == 2.0  # already open: unchanged
    breaker.admit(2.0, 5)
    breaker.trip(2.0)
    assert breaker.state is State.OPEN and breaker.probe_at == 6.0


@pytest.mark.parametrize("failures, answers", list(itertools.product(range(0, 4), range(0, 4))))
def test_every_state_and_record_combination_keeps_the_invariants(failures: int, answers: int) -> None:
    if failures > answers:
        return
    for start in ("closed", "open", "half_open"):
        breaker = CircuitBreaker(POLICY)
        if start != "closed":
            breaker.trip(0.0)
        if start == "half_open":
            breaker.admit(2.0, 5)
        before = breaker.state
        breaker.record(3.0, failures, answers)
        if answers == 0 or before is State.OPEN:
            assert breaker.state is before
        elif before is State.HALF_OPEN:
            assert breaker.state is (State.OPEN if failures else State.CLOSED)
        else:
            assert breaker.state is State.CLOSED  # too few for either threshold
        assert breaker.admit(3.0, 7) in (0, 5, 7)


def test_policy_rejects_values_it_cannot_use() -> None:
    for bad in ({"failure_rate": 0.0}, {"failure_rate": 1.5}, {"min_answers": 0}, {"probe_size": 0},
                {"open_seconds": 0.0}, {"max_open_seconds": 1.0, "open_seconds": 2.0}):
        with pytest.raises(ValueError):
            BreakerPolicy(**bad)  # type: ignore[arg-type]


def test_hold_waits_without_an_attempt_unless_it_cannot_wait() -> None:
    verdict = held_verdict(CIRCUIT_OPEN, 5.0)
    assert hold(verdict, now=100.0, expires_at=None).retry_at == 105.0
    assert hold(verdict, now=100.0, expires_at=None).status == "retrying"
    assert hold(verdict, now=100.0, expires_at=104.0).status == "suppressed"
    assert hold(verdict, now=100.0, expires_at=104.0).reason == "expired"
    assert (hold(verdict, now=100.0, expires_at=None, now_or_never=True).status,
            hold(verdict, now=100.0, expires_at=None, now_or_never=True).reason) == ("failed", "expired")
    assert held_verdict(RATE_LIMITED, -1.0).retry_after == 0.0


def test_held_batch_ids_are_deterministic_and_bounded() -> None:
    def batch(batch_id: str | None) -> DeliveryBatch:
        return DeliveryBatch(notification_id="n-1", app_id="demo", platform="apns", channel="c", priority="high",
                             items=[], batch_id=batch_id)

    assert held_batch_id(batch("o/0/0/apns/0")) == "o/0/0/apns/0/h1"
    assert held_batch_id(batch("o/0/0/apns/0/h1")) == "o/0/0/apns/0/h2"
    assert held_batch_id(batch("o/0/0/apns/0/h9")) == "o/0/0/apns/0/h10"
    assert held_batch_id(batch("o/0/0/apns/0/h3/a2")) == "o/0/0/apns/0/h3/a2/h1"
    assert held_batch_id(batch(None)) == "n-1/h1"
