"""rules.retry and the retry path of rules.delivery.dispose: bands, backoff with full jitter, Retry-After and
its cap, expiry during the wait, attempts per class. Pure, a seeded rng, no clock, no Kafka."""

from __future__ import annotations

import itertools
import random

import pytest

from pushstream.policies import ATTEMPT_CLASSES
from pushstream.providers.outcome import TRANSPORT_KINDS, Action, Verdict
from pushstream.rules.delivery import dispose
from pushstream.rules.retry import (
    MAX_DELAY_SECONDS,
    RETRY_BANDS,
    RetryPolicy,
    attempt_class,
    backoff_ceiling,
    backoff_delay,
    band_for,
    band_suffix,
    retry_delay,
)
from pushstream.rules.settle import settle
from tests.unit.rules.test_settle import batch

NOW = 1_000_000.0
POLICY = RetryPolicy(max_attempts=5, base=2.0, cap=60.0, retry_after_cap=120.0)


# --- bands ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("delay", "band"), [
    (0.0, 1), (0.5, 1), (1.0, 1), (1.0001, 10), (9.99, 10), (10.0, 10), (10.5, 60), (60.0, 60), (61.0, 600),
    (600.0, 600), (601.0, 3600), (3600.0, 3600), (86400.0, 3600), (-3.0, 1)])
def test_a_delay_goes_to_the_smallest_band_at_least_as_long(delay: float, band: int) -> None:
    assert band_for(delay) == band


def test_every_delay_has_exactly_the_smallest_fitting_band() -> None:
    for delay in [x / 4 for x in range(0, 4 * 3700)]:
        band = band_for(delay)
        assert band in RETRY_BANDS
        fitting = [b for b in RETRY_BANDS if b >= delay]
        assert band == (fitting[0] if fitting else RETRY_BANDS[-1])


def test_band_topic_suffixes_keep_the_first_bands_original_name() -> None:
    assert [band_suffix(b) for b in RETRY_BANDS] == ["", ".10s", ".60s", ".600s", ".3600s"]
    assert len({band_suffix(b) for b in RETRY_BANDS}) == len(RETRY_BANDS)


def test_the_head_of_line_bound_is_the_band_width() -> None:
    """Records appended to one band partition in write order: whatever their delays, the head's due time is
    less than a band width after the due time of any record behind it."""
    rng = random.Random(7)
    lower = dict(zip(RETRY_BANDS, (0, *RETRY_BANDS[:-1]), strict=True))
    for band in RETRY_BANDS:
        width = band - lower[band]
        for _ in range(500):
            head_written = rng.uniform(0, 100)
            head_due = head_written + rng.uniform(lower[band] + 1e-9, band)
            later_written = head_written + rng.uniform(0, 100)
            later_due = later_written + rng.uniform(lower[band] + 1e-9, band)
            assert band_for(head_due - head_written) == band == band_for(later_due - later_written)
            assert head_due - later_due < width


# --- backoff --------------------------------------------------------------------------------------------


def test_the_backoff_ceiling_doubles_up_to_the_cap() -> None:
    assert [backoff_ceiling(a, 2.0, 60.0) for a in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff_ceiling(0, 2.0, 60.0) == 2.0
    assert backoff_ceiling(10_000, 2.0, 60.0) == 60.0  # no overflow


def test_full_jitter_stays_in_zero_to_ceiling_and_covers_it() -> None:
    for attempt in range(1, 9):
        ceiling = backoff_ceiling(attempt, 2.0, 60.0)
        rng = random.Random(attempt)
        delays = [backoff_delay(attempt, 2.0, 60.0, rng) for _ in range(2000)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole window, not just its upper half.
        assert min(delays) < ceiling * 0.05 and max(delays) > ceiling * 0.95


def test_a_seeded_rng_gives_the_same_delays() -> None:
    a = [backoff_delay(3, 2.0, 60.0, random.Random(42)) for _ in range(3)]
    b = [backoff_delay(3, 2.0, 60.0, random.Random(42)) for _ in range(3)]
    assert a == b


# --- Retry-After ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
@pytest.mark.parametrize("retry_after", [None, 0.0, 0.5, 5.0, 30.0, 120.0, 500.0, 10_000.0])
def test_retry_after_beats_a_shorter_backoff_up_to_its_cap(attempt: int, retry_after: float | None) -> None:
    verdict = Verdict(Action.RETRY, "QUOTA_EXCEEDED", 429, retry_after=retry_after)
    for seed in range(50):
        backoff = backoff_delay(attempt, POLICY.base, POLICY.cap, random.Random(seed))
        delay = retry_delay(verdict, attempt, POLICY, random.Random(seed))
        honoured = min(retry_after or 0.0, POLICY.retry_after_cap)
        assert delay == max(backoff, honoured)
        assert delay <= max(POLICY.cap, POLICY.retry_after_cap)


def test_no_delay_is_longer_than_the_last_band() -> None:
    policy = RetryPolicy(max_attempts=5, base=600.0, cap=10_000.0, retry_after_cap=10_000.0)
    verdict = Verdict(Action.RETRY, "UNAVAILABLE", 503, retry_after=9_000.0)
    assert retry_delay(verdict, 5, policy, random.Random(1)) == MAX_DELAY_SECONDS


# --- attempt classes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("verdict", "expected"), [
    (Verdict(Action.RETRY, "QUOTA_EXCEEDED", 429), "throttled"),
    (Verdict(Action.RETRY, "RESOURCE_EXHAUSTED", 429), "throttled"),
    (Verdict(Action.RETRY, "TooManyRequests", 429), "throttled"),
    (Verdict(Action.RETRY, None, 429), "throttled"),
    (Verdict(Action.RETRY, "TooManyProviderTokenUpdates", 429), "throttled"),
    (Verdict(Action.RETRY, "UNAVAILABLE", 503), "unavailable"),
    (Verdict(Action.RETRY, "InternalServerError", 500), "unavailable"),
    (Verdict(Action.RETRY, "http_502", 502), "unavailable"),
    (Verdict(Action.REAUTH, "ExpiredProviderToken", 403), "reauth"),
    (Verdict(Action.REAUTH, "UNAUTHENTICATED", 401), "reauth"),
    *[(Verdict(Action.RETRY, kind), "transport") for kind in TRANSPORT_KINDS],
])
def test_attempt_classes(verdict: Verdict, expected: str) -> None:
    assert attempt_class(verdict) == expected


def test_an_unknown_class_in_the_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown retry class 'slow'"):
        RetryPolicy(3, 1.0, 10.0, attempts_by_class={"slow": 2})


CLASS_VERDICTS = {
    "throttled": Verdict(Action.RETRY, "QUOTA_EXCEEDED", 429),
    "unavailable": Verdict(Action.RETRY, "UNAVAILABLE", 503),
    "transport": Verdict(Action.RETRY, "timeout"),
    "reauth": Verdict(Action.REAUTH, "ExpiredProviderToken", 403),
}


@pytest.mark.parametrize("cls", ATTEMPT_CLASSES)
def test_attempts_are_capped_per_class(cls: str) -> None:
    by_class = {"throttled": 8, "reauth": 2}
    limit = by_class.get(cls, 4)
    verdict = CLASS_VERDICTS[cls]
    for attempt in range(1, 11):
        d = dispose(verdict, attempt=attempt, max_attempts=4, now=NOW, base=1.0, cap=10.0,
                    rng=random.Random(attempt), attempts_by_class=by_class)
        if attempt < limit:
            assert d.status == "retrying" and d.retry_at is not None and NOW <= d.retry_at <= NOW + 10.0
            assert not d.dead_letter
        else:
            assert (d.status, d.reason, d.dead_letter) == ("dead_lettered", f"retries_exhausted:{verdict.reason}",
                                                           True)


# --- expiry during the wait -----------------------------------------------------------------------------


@pytest.mark.parametrize(("ttl_left", "retry_after", "expected"), [
    (100.0, 30.0, "retrying"), (29.0, 30.0, "suppressed"), (30.0, 30.0, "retrying"),
    (500.0, 400.0, "retrying"),  # Retry-After 400 is capped at 120: well inside the TTL
    (100.0, 400.0, "suppressed"),  # capped at 120, still past a TTL 100 s away
])
def test_a_wait_that_ends_past_the_ttl_expires_now(ttl_left: float, retry_after: float, expected: str) -> None:
    verdict = Verdict(Action.RETRY, "QUOTA_EXCEEDED", 429, retry_after=retry_after)
    # Backoff ceiling 1 s: the Retry-After decides.
    d = dispose(verdict, attempt=1, max_attempts=5, now=NOW, base=1.0, cap=1.0, expires_at=NOW + ttl_left,
                rng=random.Random(3), retry_after_cap=120.0)
    assert d.status == expected
    if expected == "retrying":
        assert d.retry_at == NOW + min(retry_after, 120.0)
    else:
        assert d.reason == "expired" and d.retry_at is None and not d.dead_letter


def test_every_combination_is_consistent() -> None:
    """Exhaustively over attempts, Retry-After, TTLs and classes: a retry is inside [now, expiry], never
    earlier than the capped Retry-After, never later than the longer of the caps."""
    for attempt, retry_after, ttl_left, cls in itertools.product(
            range(1, 7), (None, 1.0, 45.0, 200.0, 5000.0), (None, 0.5, 50.0, 1000.0), ATTEMPT_CLASSES):
        verdict = CLASS_VERDICTS[cls]
        verdict = Verdict(verdict.action, verdict.reason, verdict.provider_status, retry_after=retry_after)
        expires = None if ttl_left is None else NOW + ttl_left
        d = dispose(verdict, attempt=attempt, max_attempts=5, now=NOW, base=2.0, cap=60.0, expires_at=expires,
                    rng=random.Random(attempt), retry_after_cap=120.0)
        if attempt >= 5:
            assert d.status == "dead_lettered"
        elif d.status == "retrying":
            assert d.retry_at is not None
            assert NOW + min(retry_after or 0.0, 120.0) <= d.retry_at <= NOW + 120.0
            assert expires is None or d.retry_at <= expires
        else:
            assert (d.status, d.reason) == ("suppressed", "expired") and expires is not None


# --- settle: the band the retry batch waits in ----------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "band"), [(None, 10), (0.5, 10), (30.0, 60), (100.0, 600)])
def test_the_retry_batch_carries_the_band_of_its_latest_item(retry_after: float | None, band: int) -> None:
    verdicts = [Verdict(Action.RETRY, "UNAVAILABLE", 503),
                Verdict(Action.RETRY, "QUOTA_EXCEEDED", 429, retry_after=retry_after)]
    # Backoff ceiling 2 s on attempt 1 (base 2): without a Retry-After the batch lands in the 10 s band
    # whenever a jittered delay exceeds 1 s, which seed 0 gives.
    out = settle(batch(2), verdicts, now=NOW, at="t",
                 policy=RetryPolicy(5, 2.0, 60.0, retry_after_cap=300.0), rng=random.Random(0))
    assert out.retry is not None and out.retry.not_before is not None
    assert out.retry_band == band_for(out.retry.not_before - NOW) == band
