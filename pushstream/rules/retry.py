"""When to try a delivery again, and which retry topic waits for it: pure decisions, no clock, no Kafka.

Retries wait in *delay bands*: one retry topic per (platform, lane, band). A record goes to the smallest band
whose upper bound is at least its delay. A band partition is paused until its head is due; the records behind
the head were written later with a delay in the same band, so none of them is due more than the band's width
(``upper - lower``) before the head. That is the bound: a retry is held back by a later-due one by less than its
band's width (0.9 s, 9 s, 50 s, 540 s, 3000 s for the default bands), never by a longer wait in another band.
Delays are capped at the last band's upper bound, so every record has a band.
"""

from __future__ import annotations

import random
from bisect import bisect_left

from pushstream.models.outcome import TRANSPORT_KINDS, Action, Verdict
from pushstream.policies import REAUTH, THROTTLED, TRANSPORT, UNAVAILABLE, RetryPolicy

# Upper bounds of the delay bands, in seconds. The first band keeps the retry topic's original name.
RETRY_BANDS: tuple[int, ...] = (1, 10, 60, 600, 3600)
MAX_DELAY_SECONDS = float(RETRY_BANDS[-1])

_THROTTLE_REASONS = frozenset({"QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "TooManyRequests",
                               "TooManyProviderTokenUpdates"})


def attempt_class(verdict: Verdict) -> str:
    """The class of a retryable verdict (RETRY or REAUTH)."""
    if verdict.action is Action.REAUTH:
        return REAUTH
    if verdict.provider_status == 429 or verdict.reason in _THROTTLE_REASONS:
        return THROTTLED
    if verdict.reason in TRANSPORT_KINDS:
        return TRANSPORT
    return UNAVAILABLE


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The exponential part: ``base * 2^(attempt-1)``, at most ``cap``."""
    if attempt < 1:
        attempt = 1
    # 2 ** 1100 overflows a float: the cap is reached long before.
    return min(cap, base * 2.0 ** min(attempt - 1, 64))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform over [0, ceiling], so a burst of failures spreads out
    over the whole window instead of coming back together."""
    return (rng or random).uniform(0.0, backoff_ceiling(attempt, base, cap))


def retry_delay(verdict: Verdict, attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Seconds from the provider's answer until the next try: the jittered backoff, or the provider's
    Retry-After when that is longer (capped by ``policy.retry_after_cap``), never past the last band."""
    return wait_seconds(verdict.retry_after, attempt, policy.base, policy.cap, policy.retry_after_cap, rng)


def wait_seconds(retry_after: float | None, attempt: int, base: float, cap: float, retry_after_cap: float,
                 rng: random.Random | None = None) -> float:
    """`retry_delay` over plain values (what `rules.delivery.dispose` calls once per retried device)."""
    delay = backoff_delay(attempt, base, cap, rng)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, retry_after_cap))
    return min(delay, MAX_DELAY_SECONDS)


def band_for(delay: float, bands: tuple[int, ...] = RETRY_BANDS) -> int:
    """The smallest band whose upper bound is at least ``delay`` (the last band for anything longer)."""
    index = bisect_left(bands, delay)
    return bands[min(index, len(bands) - 1)]


def band_suffix(band: int, bands: tuple[int, ...] = RETRY_BANDS) -> str:
    """The retry topic's suffix for a band: none for the first (its original name), else ``.<band>s``."""
    return "" if band == bands[0] else f".{band}s"
