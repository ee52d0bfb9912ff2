"""What a provider's verdict means for the pipeline: which status to write, whether to retry and when."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from pushstream.models.outcome import Action, Verdict
from pushstream.models.status import Status
from pushstream.rules.retry import MAX_DELAY_SECONDS, attempt_class, wait_seconds


@dataclass(frozen=True, slots=True)
class Disposition:
    status: Status  # a contract status
    reason: str | None
    retry_at: float | None = None  # epoch seconds, when status is RETRYING
    dead_letter: bool = False  # also keep the delivery in the DLQ
    deactivate: bool = False  # the device's token is dead


# The dispositions that carry nothing of their own, built once instead of once per device.
DELIVERED = Disposition(Status.DELIVERED, None)
EXPIRED = Disposition(Status.SUPPRESSED, "expired")  # it would arrive too late: final, not dead-lettered
TOO_LATE = Disposition(Status.FAILED, "expired")  # now or never, and not now
# Bound once: an enum member lookup per device costs more than the string it replaces.
_INVALID_TOKEN, _FAILED, _DEAD_LETTERED, _RETRYING = (Status.INVALID_TOKEN, Status.FAILED, Status.DEAD_LETTERED,
                                                      Status.RETRYING)


def dispose(verdict: Verdict, *, attempt: int, max_attempts: int, now: float, base: float, cap: float,
            expires_at: float | None = None, rng: random.Random | None = None,
            now_or_never: bool = False, retry_after_cap: float = MAX_DELAY_SECONDS,
            attempts_by_class: Mapping[str, int] | None = None) -> Disposition:
    """The pipeline's answer to one verdict for one device on its ``attempt``-th try.

    ``now_or_never`` (a ``ttl: 0`` notification): an answer that asks to try again later ends the delivery
    as ``failed``/``expired`` instead, final and not dead-lettered: any later attempt, a redrive included,
    would break the "now or never" the sender asked for.

    A retry waits the jittered backoff or the provider's Retry-After (capped at ``retry_after_cap``),
    whichever is longer, counted from ``now`` (the answer); ``attempts_by_class`` caps the tries per
    `rules.retry.attempt_class` (``max_attempts`` for the others). A retry that would come after
    ``expires_at`` is ``suppressed``/``expired`` now.
    """
    action = verdict.action
    if action is Action.DELIVERED:
        return DELIVERED
    if action is Action.INVALID_TOKEN:
        return Disposition(_INVALID_TOKEN, verdict.reason, deactivate=True)
    if action is Action.FAILED:
        if verdict.reason == "expired":
            return EXPIRED
        return Disposition(_FAILED, verdict.reason, dead_letter=True)
    if action is Action.FATAL_CONFIG:
        return Disposition(_DEAD_LETTERED, verdict.reason or "fatal_config", dead_letter=True)
    # RETRY and REAUTH: try again later unless out of attempts or out of time.
    if now_or_never:
        return TOO_LATE
    limit = attempts_by_class.get(attempt_class(verdict), max_attempts) if attempts_by_class else max_attempts
    if attempt >= limit:
        return Disposition(_DEAD_LETTERED, f"retries_exhausted:{verdict.reason}", dead_letter=True)
    retry_at = now + wait_seconds(verdict.retry_after, attempt, base, cap, retry_after_cap, rng)
    if expires_at is not None and retry_at > expires_at:
        return EXPIRED
    return Disposition(_RETRYING, verdict.reason, retry_at=retry_at)
