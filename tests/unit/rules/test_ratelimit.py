"""The token bucket per (app, provider): pacing, splitting, halving on 429 and gradual recovery. Pure."""

from __future__ import annotations

import pytest

from pushstream.rules.ratelimit import Grant, RatePolicy, TokenBucket


def test_a_full_bucket_sends_a_burst_at_once() -> None:
    bucket = TokenBucket(RatePolicy(100.0), now=0.0)
    assert bucket.take(0.0, 100, max_wait=1.0) == Grant(100, 0.0, 0.0)


def test_a_batch_larger_than_the_tokens_waits_for_them() -> None:
    bucket = TokenBucket(RatePolicy(100.0), now=0.0)
    bucket.take(0.0, 100, max_wait=1.0)
    grant = bucket.take(0.0, 50, max_wait=1.0)
    assert grant.count == 50 and grant.wait == pytest.approx(0.5)
    grant = bucket.take(0.5, 50, max_wait=1.0)  # the debt of the previous one is repaid first
    assert grant.count == 50 and grant.wait == pytest.approx(0.5)


def test_the_long_run_rate_holds() -> None:
    bucket = TokenBucket(RatePolicy(200.0), now=0.0)
    now, sent = 0.0, 0
    while now < 10.0:
        grant = bucket.take(now, 50, max_wait=5.0)
        now += grant.wait
        sent += grant.count
    assert 200 * 10 <= sent <= 200 * 10 + 200 + 50  # rate x time, plus the initial burst and one batch


def test_what_does_not_fit_in_the_wait_is_split_off() -> None:
    bucket = TokenBucket(RatePolicy(100.0), now=0.0)
    bucket.take(0.0, 100, max_wait=1.0)  # empty
    grant = bucket.take(0.0, 500, max_wait=1.0)
    assert grant.count == 100 and grant.wait == pytest.approx(1.0)
    assert grant.rest_after == pytest.approx(5.0)  # the other 400 after the 100 in debt


def test_an_empty_bucket_with_no_wait_allowed_holds_everything() -> None:
    bucket = TokenBucket(RatePolicy(10.0), now=0.0)
    bucket.take(0.0, 10, max_wait=0.0)
    grant = bucket.take(0.0, 5, max_wait=0.0)
    assert grant.count == 0 and grant.wait == 0.0 and grant.rest_after == pytest.approx(0.5)
    assert bucket.take(0.0, 0, max_wait=0.0) == Grant(0, 0.0, 0.0)


def test_tokens_never_exceed_the_burst() -> None:
    bucket = TokenBucket(RatePolicy(10.0, burst=20.0), now=0.0)
    bucket.take(1000.0, 0, max_wait=0.0)
    assert bucket.take(1000.0, 21, max_wait=0.0).count == 20


def test_a_throttle_halves_once_per_period_down_to_the_floor() -> None:
    bucket = TokenBucket(RatePolicy(100.0, floor=0.1, recover_seconds=5.0), now=0.0)
    assert bucket.throttled(0.0) and bucket.rate == 50.0
    assert not bucket.throttled(1.0) and bucket.rate == 50.0  # the same burst of 429s: one signal
    assert bucket.throttled(5.0) and bucket.rate == 25.0
    for t in range(10, 60, 5):
        bucket.throttled(float(t))
    assert bucket.rate == 10.0  # the floor
    assert not bucket.throttled(100.0)


def test_it_recovers_gradually_without_throttles() -> None:
    bucket = TokenBucket(RatePolicy(100.0, recover_seconds=5.0, recover_step=0.1), now=0.0)
    bucket.throttled(0.0)
    bucket.take(4.9, 0, max_wait=0.0)
    assert bucket.rate == 50.0
    bucket.take(5.0, 0, max_wait=0.0)
    assert bucket.rate == pytest.approx(60.0)
    bucket.take(17.0, 0, max_wait=0.0)
    assert bucket.rate == pytest.approx(80.0)
    bucket.take(100.0, 0, max_wait=0.0)
    assert bucket.rate == 100.0  # never above the configured rate


def test_the_reduced_rate_paces_sends() -> None:
    bucket = TokenBucket(RatePolicy(100.0), now=0.0)
    bucket.take(0.0, 100, max_wait=1.0)
    bucket.throttled(0.0)
    assert bucket.take(0.0, 50, max_wait=5.0).wait == pytest.approx(1.0)


def test_policy_rejects_values_it_cannot_use() -> None:
    for bad in ({"rate": 0.0}, {"rate": -1.0}, {"rate": float("inf")}, {"rate": 1.0, "burst": 0.5},
                {"rate": 1.0, "floor": 0.0}, {"rate": 1.0, "recover_step": 2.0}, {"rate": 1.0, "recover_seconds": 0}):
        with pytest.raises(ValueError):
            RatePolicy(**bad)  # type: ignore[arg-type]
    assert RatePolicy(0.5).size == 1.0
