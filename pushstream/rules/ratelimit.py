"""A token bucket per (app, provider) that backs off on 429 / QUOTA_EXCEEDED and recovers gradually.

A sender asks for N tokens for a batch of N devices (`take`). Tokens refill at ``rate`` per second up to
``burst``. A batch may run the bucket into debt (one batch of 500 at 100/s): the caller waits until the debt
is repaid, so the long-run rate holds. If the wait would exceed ``max_wait`` the bucket grants only what it can
within that wait and the caller holds the rest back (through the retry path) for ``rest_after`` seconds.

Adaptation: `throttled` (the provider said 429 / QUOTA_EXCEEDED) halves the rate, at most once per
``recover_seconds`` (a batch of 500 rejections is one signal), never below ``floor`` of the configured rate;
every ``recover_seconds`` without a throttle adds ``recover_step`` of the configured rate back, up to it.
Times are the caller's clock (monotonic seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RatePolicy:
    rate: float  # tokens (devices) per second, as configured for this process
    burst: float | None = None  # bucket size; default one second of the configured rate (at least 1)
    floor: float = 0.05  # the lowest rate adaptation goes to, as a share of `rate`
    recover_seconds: float = 5.0
    recover_step: float = 0.1  # share of `rate` added back per recover_seconds

    def __post_init__(self) -> None:
        if self.rate <= 0 or not math.isfinite(self.rate):
            raise ValueError("rate must be a positive number")
        if self.burst is not None and self.burst < 1:
            raise ValueError("burst must be at least 1")
        if not 0 < self.floor <= 1 or not 0 < self.recover_step <= 1 or self.recover_seconds <= 0:
            raise ValueError("floor and recover_step must be in (0, 1], recover_seconds > 0")

    @property
    def size(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.rate)


@dataclass(frozen=True, slots=True)
class Grant:
    count: int  # devices that may be sent once `wait` seconds have passed
    wait: float
    rest_after: float  # for the other devices: when to try again (seconds from now); 0 when count is all


class TokenBucket:
    def __init__(self, policy: RatePolicy, now: float) -> None:
        self.policy = policy
        self.rate = policy.rate
        self.tokens = policy.size
        self.throttles = 0
        self._at = now
        self._changed = now  # last halving or recovery step
        self._halved = now

    def _refill(self, now: float, *, recover: bool = True) -> None:
        policy = self.policy
        if recover and self.rate < policy.rate:
            steps = int((now - self._changed) // policy.recover_seconds)
            if steps > 0:
                self.rate = min(policy.rate, self.rate + steps * policy.recover_step * policy.rate)
                self._changed += steps * policy.recover_seconds
        elapsed = max(0.0, now - self._at)
        self.tokens = min(policy.size, self.tokens + elapsed * self.rate)
        self._at = max(self._at, now)

    def take(self, now: float, n: int, max_wait: float) -> Grant:
        """Tokens for up to ``n`` devices: all of them if the wait stays within ``max_wait``."""
        self._refill(now)
        if n <= 0:
            return Grant(0, 0.0, 0.0)
        rate = self.rate
        wait = max(0.0, (n - self.tokens) / rate)
        if wait <= max_wait:
            self.tokens -= n
            return Grant(n, wait, 0.0)
        count = max(0, min(n, math.floor(self.tokens + max_wait * rate)))
        wait = max(0.0, (count - self.tokens) / rate) if count else 0.0
        self.tokens -= count
        # The rest would be covered by the refill after the debt: ask again when it is.
        rest_after = max(wait, (n - count - self.tokens) / rate)
        return Grant(count, wait, max(rest_after, 1.0 / rate))

    def throttled(self, now: float) -> bool:
        """The provider pushed back: halve the rate (once per recover period). True if it changed."""
        self._refill(now, recover=False)  # no recovery step credited during a push-back
        policy = self.policy
        if self.throttles and now - self._halved < policy.recover_seconds:
            return False
        floor = policy.floor * policy.rate
        halved = max(floor, self.rate / 2)
        changed = halved < self.rate
        self.rate = halved
        self.tokens = min(self.tokens, policy.size)
        self._changed = self._halved = now
        self.throttles += 1
        return changed
