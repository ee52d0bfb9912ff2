"""The sender's provider protection: a breaker, a mass-deactivation guard and a rate limit per (app, provider).

One `Protection` per sender process, shared by its lanes (so the rate limit and the breaker are per app and
provider, not per lane). The sender calls two hooks, both once per batch, around its send:

- `before_send(batch)`: how many of the batch's devices go out now (the breaker's admission and the rate
  limit's tokens), how long to wait first, and "held" verdicts for the rest;
- `after_send(poll)`: feeds the answers to the guard and the breakers (counts only: one pass over each batch's
  verdicts) and replaces the verdicts held back: invalid-token answers while the guard is tripped, failures
  while the breaker is open. Settling (`rules.settle`) then writes the held devices
  as `retrying` (reason `circuit_open` / `rate_limited`) in a retry batch of the same attempt, due when the
  breaker's next probe is.

The decisions are the pure classes in `rules.breaker`, `rules.guard` and `rules.ratelimit`; this module only
keeps them per key, reads a clock and logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pushstream import metrics
from pushstream.config import Settings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.outcome import Action, Verdict
from pushstream.rules.breaker import (
    CIRCUIT_OPEN,
    INVALIDATION_GUARD,
    RATE_LIMITED,
    BreakerPolicy,
    CircuitBreaker,
    held_verdict,
    is_answer,
    is_failure,
)
from pushstream.rules.guard import GuardPolicy, InvalidationGuard
from pushstream.rules.ratelimit import RatePolicy, TokenBucket

log = logging.getLogger("pushstream.protection")

THROTTLE_REASONS = frozenset({"QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED"})


@dataclass
class Plan:
    """What to do with one batch: send its first ``send`` devices after ``wait`` seconds, hold the rest."""

    send: int
    wait: float
    held: list[Verdict]
    probe: bool = False


@dataclass
class Guarded:
    """The protection state of one (app, provider) in this process."""

    breaker: CircuitBreaker
    guard: InvalidationGuard
    bucket: TokenBucket | None


def first(batch: DeliveryBatch, n: int) -> DeliveryBatch:
    """The batch with only its first ``n`` devices (a probe, or what the rate limit admits now)."""
    return DeliveryBatch(**{**batch.asdict(), "items": batch.items[:n]})


def per_process_rate(settings: Settings, app_id: str, platform: str) -> float | None:
    """This process's share of the app's provider limit: the configured rate over the sender processes."""
    app = settings.app(app_id)
    provider = getattr(app, platform, None) if app is not None else None
    rate = getattr(provider, "rate_limit_per_second", None)
    if rate is None:
        return None
    return float(rate) / settings.pipeline.sender_processes


class Protection:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.breaker_policy = BreakerPolicy(**asdict(settings.breaker))
        self.guard_policy = GuardPolicy(**asdict(settings.invalidation_guard))
        self.max_wait = settings.pipeline.rate_limit_max_wait_seconds
        self.keys: dict[tuple[str, str], Guarded] = {}

    def of(self, app_id: str, platform: str) -> Guarded:
        key = (app_id, platform)
        state = self.keys.get(key)
        if state is None:
            rate = per_process_rate(self.settings, app_id, platform)
            bucket = TokenBucket(RatePolicy(rate), self.clock()) if rate is not None else None
            state = self.keys[key] = Guarded(CircuitBreaker(self.breaker_policy),
                                             InvalidationGuard(self.guard_policy), bucket)
        return state

    def before_send(self, batch: DeliveryBatch) -> Plan:
        n = len(batch.items)
        app = self.settings.app(batch.app_id)
        if app is None or not app.platform_configured(batch.platform):
            return Plan(n, 0.0, [])  # settled as platform_not_configured: nothing to protect
        state = self.of(batch.app_id, batch.platform)
        now = self.clock()
        breaker = state.breaker
        was_open = breaker.is_open
        admitted = breaker.admit(now, n)
        probe = was_open and admitted > 0
        held: list[Verdict] = []
        if admitted < n:
            held = [held_verdict(CIRCUIT_OPEN, breaker.retry_in(now))] * (n - admitted)
        wait = 0.0
        if state.bucket is not None and admitted:
            grant = state.bucket.take(now, admitted, self.max_wait)
            wait = grant.wait
            if grant.count < admitted:
                held = [held_verdict(RATE_LIMITED, grant.rest_after)] * (admitted - grant.count) + held
                admitted = grant.count
        return Plan(admitted, wait, held, probe)

    def after_send(self, sent: Sequence[tuple[DeliveryBatch, Plan, list[Verdict | None]]]) -> None:
        """Count each sent batch's answers (in place: the guard's held answers replace their verdicts)."""
        now = self.clock()
        for batch, plan, verdicts in sent:
            if not plan.send:
                continue
            state = self.of(batch.app_id, batch.platform)
            failures = answers = invalid = throttled = 0
            part = verdicts[:plan.send]
            first = part[0]
            if (first is not None and first.action is Action.DELIVERED and part[-1] is first
                    and part.count(first) == plan.send):
                # All delivered, one shared verdict (APNs): counted at C speed, no Python per device.
                answers, part = plan.send, []
            for verdict in part:
                if not is_answer(verdict):
                    continue
                answers += 1
                assert verdict is not None
                action = verdict.action
                if action is Action.INVALID_TOKEN:
                    invalid += 1
                elif action is Action.RETRY:
                    if is_failure(verdict):
                        failures += 1
                    elif verdict.provider_status == 429 or verdict.reason in THROTTLE_REASONS:
                        throttled += 1
            if throttled and state.bucket is not None and state.bucket.throttled(now):
                log.warning("rate limit of %s/%s halved to %.1f/s after %d throttled answers", batch.app_id,
                            batch.platform, state.bucket.rate, throttled)
            guard, breaker = state.guard, state.breaker
            was_tripped, was_open = guard.tripped, breaker.is_open
            hold_invalid = guard.observe(now, invalid, answers, probe=plan.probe)
            if guard.tripped:
                breaker.trip(now)  # closed: opens; half-open (this was its probe): opens for longer
            breaker.record(now, failures, answers)
            # While the breaker is open, a failed device waits for the next probe instead of using up an attempt
            # (a probe's devices would otherwise be retried into the DLQ during a long outage).
            hold_failed = failures > 0 and breaker.is_open
            if (hold_invalid and invalid) or hold_failed:
                wait = breaker.retry_in(now)
                suspicious = guard.hold_seconds(now)  # not tripped yet: hold for the confirmation time only
                invalid_reason, invalid_wait = ((INVALIDATION_GUARD, suspicious) if suspicious is not None
                                                else (CIRCUIT_OPEN, wait))
                for i in range(plan.send):
                    verdict = verdicts[i]
                    if verdict is None:
                        continue
                    if hold_invalid and verdict.action is Action.INVALID_TOKEN:
                        verdicts[i] = held_verdict(invalid_reason, invalid_wait, verdict.provider_status)
                    elif hold_failed and is_failure(verdict):
                        verdicts[i] = held_verdict(CIRCUIT_OPEN, wait, verdict.provider_status)
            self._log_changes(now, batch, state, was_tripped, was_open)

    @staticmethod
    def _log_changes(now: float, batch: DeliveryBatch, state: Guarded, was_tripped: bool, was_open: bool) -> None:
        guard, breaker = state.guard, state.breaker
        app_id, platform = batch.app_id, batch.platform
        if guard.tripped and not was_tripped:
            log.error("invalidation guard tripped for %s/%s: %d of %d answers in %.0f s said the token is invalid; "
                      "not deactivating, breaker open, deliveries held (check the app's %s environment and "
                      "credentials)", app_id, platform, guard.window_invalid, guard.window_answers,
                      guard.policy.window_seconds, platform,
                      extra={"app_id": app_id, "platform": platform, "invalid": guard.window_invalid,
                             "answers": guard.window_answers, "event": "invalidation_guard_tripped"})
        elif was_tripped and not guard.tripped:
            log.warning("invalidation guard reset for %s/%s: a probe's answers were mostly valid", app_id, platform,
                        extra={"app_id": app_id, "platform": platform, "event": "invalidation_guard_reset"})
        if breaker.is_open and not was_open:
            log.warning("circuit breaker opened for %s/%s: deliveries wait %.1f s for a probe", app_id, platform,
                        breaker.retry_in(now),
                        extra={"app_id": app_id, "platform": platform, "event": "breaker_open"})
        elif was_open and not breaker.is_open:
            log.warning("circuit breaker closed for %s/%s: a probe succeeded", app_id, platform,
                        extra={"app_id": app_id, "platform": platform, "event": "breaker_closed"})

    def gauges(self) -> list[tuple[str, str, int, int]]:
        """(app_id, platform, breaker open, guard tripped) per key seen, for the metrics collector."""
        return [(app_id, platform, int(s.breaker.is_open), int(s.guard.tripped))
                for (app_id, platform), s in list(self.keys.items())]


_processes: dict[int, tuple[Settings, Protection]] = {}


def for_process(settings: Settings) -> Protection:
    """The process's one `Protection` for these settings, shared by its sender services; exported as metrics."""
    entry = _processes.get(id(settings))
    if entry is None or entry[0] is not settings:
        entry = _processes[id(settings)] = (settings, Protection(settings))
        metrics.watch_protection(entry[1])
    return entry[1]


def describe(protection: Protection) -> dict[str, Any]:
    """The state of every key, for /debug/senders."""
    return {f"{a}/{p}": {"breaker": s.breaker.state.value, "guard_tripped": s.guard.tripped,
                         "rate": s.bucket.rate if s.bucket is not None else None}
            for (a, p), s in protection.keys.items()}
