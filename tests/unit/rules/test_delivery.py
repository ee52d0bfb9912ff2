"""rules.delivery.dispose: every action, exhaustion per class, Retry-After against the backoff, expiry while
waiting, now-or-never, and the jitter's bounds for a seeded generator."""

from __future__ import annotations

import random

import pytest

from pushstream.models.outcome import Action, Verdict
from pushstream.models.status import Status
from pushstream.rules.delivery import DELIVERED, EXPIRED, TOO_LATE, dispose
from pushstream.rules.retry import MAX_DELAY_SECONDS, backoff_ceiling

NOW = 1_800_000_000.0


def decide(verdict: Verdict, **overrides: object) -> object:
    options: dict[str, object] = {"attempt": 1, "max_attempts": 3, "now": NOW, "base": 2.0, "cap": 60.0}
    options.update(overrides)
    return dispose(verdict, **options)  # type: ignore[arg-type]


def test_delivered_is_final_and_carries_nothing() -> None:
    assert decide(Verdict(Action.DELIVERED, None, 200)) is DELIVERED
    assert DELIVERED.status == Status.DELIVERED and DELIVERED.retry_at is None and not DELIVERED.dead_letter


def test_an_invalid_token_deactivates_the_device_and_is_not_dead_lettered() -> None:
    d = dispose(Verdict(Action.INVALID_TOKEN, "Unregistered", 410), attempt=1, max_attempts=3, now=NOW, base=1,
                cap=1)
    assert (d.status, d.reason, d.deactivate, d.dead_letter, d.retry_at) == (
        Status.INVALID_TOKEN, "Unregistered", True, False, None)


@pytest.mark.parametrize("reason", ["BadPriority", "PayloadTooLarge", "INVALID_ARGUMENT", None])
def test_a_permanent_failure_is_failed_and_dead_lettered(reason: str | None) -> None:
    d = dispose(Verdict(Action.FAILED, reason, 400), attempt=1, max_attempts=3, now=NOW, base=1, cap=1)
    assert (d.status, d.reason, d.dead_letter, d.deactivate) == (Status.FAILED, reason, True, False)


def test_a_failure_because_the_message_expired_is_suppressed_not_dead_lettered() -> None:
    assert dispose(Verdict(Action.FAILED, "expired"), attempt=1, max_attempts=3, now=NOW, base=1, cap=1) is EXPIRED
    assert (EXPIRED.status, EXPIRED.reason, EXPIRED.dead_letter) == (Status.SUPPRESSED, "expired", False)


@pytest.mark.parametrize("reason", ["InvalidProviderToken", None])
def test_fatal_configuration_is_dead_lettered_with_its_reason(reason: str | None) -> None:
    d = dispose(Verdict(Action.FATAL_CONFIG, reason, 403), attempt=1, max_attempts=3, now=NOW, base=1, cap=1)
    assert (d.status, d.reason, d.dead_letter) == (Status.DEAD_LETTERED, reason or "fatal_config", True)


@pytest.mark.parametrize("action", [Action.RETRY, Action.REAUTH])
def test_a_retryable_answer_waits_and_is_retrying_until_the_attempts_run_out(action: Action) -> None:
    verdict = Verdict(action, "Unavailable" if action is Action.RETRY else "ExpiredProviderToken", 503)
    for attempt in (1, 2):
        d = dispose(verdict, attempt=attempt, max_attempts=3, now=NOW, base=2.0, cap=60.0, rng=random.Random(1))
        assert d.status == Status.RETRYING and d.reason == verdict.reason and not d.dead_letter
        assert d.retry_at is not None and NOW <= d.retry_at <= NOW + backoff_ceiling(attempt, 2.0, 60.0)
    exhausted = dispose(verdict, attempt=3, max_attempts=3, now=NOW, base=2.0, cap=60.0)
    assert (exhausted.status, exhausted.reason, exhausted.dead_letter) == (
        Status.DEAD_LETTERED, f"retries_exhausted:{verdict.reason}", True)


def test_attempts_are_capped_per_class() -> None:
    throttled = Verdict(Action.RETRY, "TooManyRequests", 429)
    unavailable = Verdict(Action.RETRY, "Unavailable", 503)
    limits = {"throttled": 2}
    assert dispose(throttled, attempt=2, max_attempts=5, now=NOW, base=1, cap=1,
                   attempts_by_class=limits).status == Status.DEAD_LETTERED
    assert dispose(unavailable, attempt=2, max_attempts=5, now=NOW, base=1, cap=1,
                   attempts_by_class=limits).status == Status.RETRYING


def test_retry_after_beats_a_shorter_backoff_and_is_capped() -> None:
    verdict = Verdict(Action.RETRY, "TooManyRequests", 429, retry_after=30.0)
    d = dispose(verdict, attempt=1, max_attempts=3, now=NOW, base=1.0, cap=2.0, rng=random.Random(3))
    assert d.retry_at == NOW + 30.0  # the backoff is at most 1 s here: the provider's wait wins
    capped = dispose(verdict, attempt=1, max_attempts=3, now=NOW, base=1.0, cap=2.0, retry_after_cap=10.0)
    assert capped.retry_at == NOW + 10.0
    # A backoff longer than Retry-After is kept (never earlier than the provider asked, never shorter).
    long = dispose(Verdict(Action.RETRY, "TooManyRequests", 429, retry_after=0.5), attempt=1, max_attempts=3,
                   now=NOW, base=100.0, cap=100.0, rng=random.Random(0))
    assert long.retry_at is not None and long.retry_at >= NOW + 0.5
    huge = dispose(Verdict(Action.RETRY, "TooManyRequests", 429, retry_after=1e9), attempt=1, max_attempts=3,
                   now=NOW, base=1, cap=1, retry_after_cap=1e9)
    assert huge.retry_at == NOW + MAX_DELAY_SECONDS


def test_a_retry_that_would_come_after_the_expiry_is_suppressed_expired_now() -> None:
    verdict = Verdict(Action.RETRY, "Unavailable", 503, retry_after=20.0)
    assert dispose(verdict, attempt=1, max_attempts=3, now=NOW, base=1, cap=1, expires_at=NOW + 19.0) is EXPIRED
    kept = dispose(verdict, attempt=1, max_attempts=3, now=NOW, base=1, cap=1, expires_at=NOW + 21.0)
    assert kept.status == Status.RETRYING and kept.retry_at == NOW + 20.0


def test_now_or_never_fails_a_retryable_answer_instead_of_waiting() -> None:
    for action in (Action.RETRY, Action.REAUTH):
        assert dispose(Verdict(action, "Unavailable", 503), attempt=1, max_attempts=3, now=NOW, base=1, cap=1,
                       now_or_never=True) is TOO_LATE
    assert (TOO_LATE.status, TOO_LATE.reason, TOO_LATE.dead_letter) == (Status.FAILED, "expired", False)
    # Answers that are final anyway are unaffected.
    assert dispose(Verdict(Action.DELIVERED), attempt=1, max_attempts=3, now=NOW, base=1, cap=1,
                   now_or_never=True) is DELIVERED


def test_full_jitter_spans_zero_to_the_ceiling_and_is_reproducible_with_a_seed() -> None:
    verdict = Verdict(Action.RETRY, "Unavailable", 503)

    def wait(attempt: int, seed: int) -> float:
        retry_at = dispose(verdict, attempt=attempt, max_attempts=99, now=NOW, base=2.0, cap=60.0,
                           rng=random.Random(seed)).retry_at
        assert retry_at is not None
        return retry_at - NOW

    for attempt in (1, 2, 3, 4, 8):
        ceiling = backoff_ceiling(attempt, 2.0, 60.0)
        waits = [wait(attempt, seed) for seed in range(300)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert min(waits) < ceiling * 0.1 and max(waits) > ceiling * 0.9  # full jitter, not a fixed delay
        assert waits == [wait(attempt, seed) for seed in range(300)]
