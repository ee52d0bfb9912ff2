"""A circuit breaker for one (app, provider): closed, open or half-open, as plain state over an injected clock.

The sender asks it, per batch, how many devices it may send now (`admit`) and tells it, per batch, how many
answers were provider failures and how many were answers at all (`record`). What counts as a failure is
`is_failure`: transport errors, timeouts and 5xx; a per-device rejection (BadDeviceToken, Unregistered) is an
answer from a healthy provider, and a 429 is the rate limiter's business (`rules.ratelimit`).

- closed: everything is admitted. It opens when ``consecutive_failures`` failures arrive with no success
  between them, or when the failures of the last ``window_seconds`` reach ``failure_rate`` of at least
  ``min_answers`` answers.
- open: nothing is admitted until ``probe_at``; then it is half-open.
- half-open: one probe of at most ``probe_size`` devices is admitted (the rest wait). A probe without failures
  closes it; a probe with failures opens it again for twice as long (up to ``max_open_seconds``).

`trip` opens it from outside (the mass-invalidation guard). Nothing here sleeps or touches Kafka.
"""

from __future__ import annotations

import re
from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING

from pushstream.models.outcome import TRANSPORT_KINDS, Action, Verdict
from pushstream.models.status import Status
from pushstream.policies import BreakerPolicy
from pushstream.rules.delivery import EXPIRED, TOO_LATE, Disposition

if TYPE_CHECKING:
    from pushstream.models.internal import DeliveryBatch

CIRCUIT_OPEN = "circuit_open"  # status reason: held back while a breaker is open (or the guard holds answers)
RATE_LIMITED = "rate_limited"  # status reason: held back by the app's provider rate limit
# status reason: an invalid-token answer held for the guard's confirmation time (`rules.guard`)
INVALIDATION_GUARD = "invalidation_guard"
HOLD_REASONS = frozenset({CIRCUIT_OPEN, RATE_LIMITED, INVALIDATION_GUARD})
_HELD_SUFFIX = re.compile(r"/h(\d+)$")


def held_verdict(reason: str, seconds: float, provider_status: int | None = None) -> Verdict:
    """The verdict of a device held back for ``seconds`` (not sent, or its answer not acted on)."""
    return Verdict(Action.RETRY, reason, provider_status, max(0.0, seconds))


def hold(verdict: Verdict, *, now: float, expires_at: float | None, now_or_never: bool = False) -> Disposition:
    """A held device waits in the retry path without using up an attempt, unless it cannot wait at all."""
    if now_or_never:
        return TOO_LATE
    retry_at = now + (verdict.retry_after or 0.0)
    if expires_at is not None and retry_at > expires_at:
        return EXPIRED
    return Disposition(Status.RETRYING, verdict.reason, retry_at=retry_at)


def held_batch_id(batch: DeliveryBatch) -> str:
    """A held batch's identity follows from its parent's (``…/h1``, ``…/h2``): deterministic and bounded."""
    base = batch.batch_id or batch.notification_id
    match = _HELD_SUFFIX.search(base)
    if match is None:
        return f"{base}/h1"
    return f"{base[:match.start()]}/h{int(match.group(1)) + 1}"


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def is_failure(verdict: Verdict | None) -> bool:
    """A provider that failed to answer for this device: transport error, timeout or a 5xx."""
    if verdict is None or verdict.action is not Action.RETRY:
        return False
    if verdict.reason in HOLD_REASONS:
        return False
    status = verdict.provider_status
    return (status is not None and status >= 500) or (status is None and verdict.reason in TRANSPORT_KINDS)


def is_answer(verdict: Verdict | None) -> bool:
    """Anything the provider said or failed to say about a device actually sent (not held, not configured)."""
    return verdict is not None and verdict.reason not in HOLD_REASONS


class CircuitBreaker:
    """One (app, provider)'s breaker. Times are the caller's clock (monotonic seconds)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = State.CLOSED
        self.probe_at = 0.0  # when open: the earliest moment a probe is admitted
        self.opened = 0  # times it opened (for logs and tests)
        self._open_for = policy.open_seconds
        self._probing = False  # half-open: a probe is on the wire
        self._probe_sent = 0.0
        self._consecutive = 0
        self._window: deque[tuple[float, int, int]] = deque()  # (at, failures, answers) per recorded batch
        self._failures = 0
        self._answers = 0

    @property
    def is_open(self) -> bool:
        """Open or half-open: not (yet) trusted with the whole traffic."""
        return self.state is not State.CLOSED

    def admit(self, now: float, wanted: int) -> int:
        """How many of ``wanted`` devices may be sent now; the caller holds back the rest."""
        if self.state is State.CLOSED:
            return wanted
        if self.state is State.OPEN:
            if now < self.probe_at:
                return 0
            self.state, self._probing = State.HALF_OPEN, False
        if self._probing and now < self._probe_sent + self.policy.max_open_seconds:
            return 0  # one probe at a time; one never recorded (nothing answered) is given up after a while
        self._probing, self._probe_sent = True, now
        return min(wanted, self.policy.probe_size)

    def record(self, now: float, failures: int, answers: int) -> None:
        """The answers of one sent batch (or probe): ``failures`` of them failures (`is_failure`)."""
        if answers <= 0:
            return
        if self.state is State.HALF_OPEN:
            if not self._probing:
                return  # sent before the breaker opened: the probe decides
            self._probing = False
            if failures:
                self._open(now, longer=True)
            else:
                self._close()
            return
        if self.state is State.OPEN:
            return  # answers of batches admitted before it opened
        self._consecutive = self._consecutive + failures if failures == answers else failures
        self._window.append((now, failures, answers))
        self._failures += failures
        self._answers += answers
        self._expire(now)
        policy = self.policy
        if self._consecutive >= policy.consecutive_failures or (
                self._answers >= policy.min_answers and self._failures >= policy.failure_rate * self._answers):
            self._open(now, longer=False)

    def trip(self, now: float) -> None:
        """Open now from outside (a configuration fault found elsewhere); after a probe, open for longer."""
        if self.state is State.CLOSED:
            self._open(now, longer=False)
        elif self.state is State.HALF_OPEN:
            self._open(now, longer=True)

    def retry_in(self, now: float) -> float:
        """Seconds a held device should wait: until the next probe, or (half-open) until the probe answered."""
        if self.state is State.OPEN:
            return max(0.0, self.probe_at - now)
        return self.policy.open_seconds

    def _open(self, now: float, *, longer: bool) -> None:
        if longer:
            self._open_for = min(self.policy.max_open_seconds, self._open_for * 2)
        else:
            self._open_for = self.policy.open_seconds
        if self.state is State.CLOSED:
            self.opened += 1
        self.state, self.probe_at, self._probing = State.OPEN, now + self._open_for, False
        self._reset_window()

    def _close(self) -> None:
        self.state, self._open_for = State.CLOSED, self.policy.open_seconds
        self._reset_window()

    def _reset_window(self) -> None:
        self._window.clear()
        self._failures = self._answers = self._consecutive = 0

    def _expire(self, now: float) -> None:
        horizon = now - self.policy.window_seconds
        window = self._window
        while window and window[0][0] < horizon:
            _, failures, answers = window.popleft()
            self._failures -= failures
            self._answers -= answers
