"""The shapes of the sender's retry and protection policies, with their invariants.

These are plain frozen values that two layers speak: `pushstream.config` checks pushstream.yaml's `pipeline`,
`breaker` and `invalidation_guard` sections against them at start-up, and the rules (`rules.retry`,
`rules.breaker`, `rules.guard`) decide with them. They live at the config layer so that config never imports
a rule (the layer map is in docs/architecture.md). Nothing here reads a file or a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Attempt classes: why a delivery is retried decides how many tries it gets (`rules.retry.attempt_class`).
THROTTLED = "throttled"  # 429, FCM QUOTA_EXCEEDED / RESOURCE_EXHAUSTED, APNs TooManyRequests
UNAVAILABLE = "unavailable"  # the provider answered with a transient error (5xx, Unavailable, INTERNAL)
TRANSPORT = "transport"  # no answer at all (timeout, connection lost or refused)
REAUTH = "reauth"  # our credentials were stale and are being renewed
ATTEMPT_CLASSES: tuple[str, ...] = (THROTTLED, UNAVAILABLE, TRANSPORT, REAUTH)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` for every class not in ``attempts_by_class``; delays are seconds."""

    max_attempts: int
    base: float
    cap: float
    retry_after_cap: float = 300.0
    attempts_by_class: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.attempts_by_class) - set(ATTEMPT_CLASSES))
        if unknown:
            raise ValueError(f"unknown retry class {unknown[0]!r} (known: {', '.join(ATTEMPT_CLASSES)})")

    def attempts(self, attempt_class: str) -> int:
        return self.attempts_by_class.get(attempt_class, self.max_attempts)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """The circuit breaker's thresholds (`rules.breaker.CircuitBreaker`)."""

    failure_rate: float = 0.5
    min_answers: int = 20
    window_seconds: float = 10.0
    consecutive_failures: int = 10
    open_seconds: float = 2.0
    max_open_seconds: float = 60.0
    probe_size: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        if min(self.min_answers, self.consecutive_failures, self.probe_size) < 1:
            raise ValueError("min_answers, consecutive_failures and probe_size must be at least 1")
        if self.window_seconds <= 0 or self.open_seconds <= 0 or self.max_open_seconds < self.open_seconds:
            raise ValueError("window_seconds and open_seconds must be > 0, max_open_seconds >= open_seconds")


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """The mass-deactivation guard's thresholds (`rules.guard.InvalidationGuard`)."""

    share: float = 0.5
    min_answers: int = 20
    window_seconds: float = 60.0
    confirm_seconds: float = 5.0
    confirm_min_invalid: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1 or self.min_answers < 1 or self.window_seconds <= 0 or self.confirm_seconds < 0:
            raise ValueError("share must be in (0, 1], min_answers >= 1, window_seconds > 0, confirm_seconds >= 0")
        if self.confirm_min_invalid < 1:
            raise ValueError("confirm_min_invalid must be at least 1")
