"""What a provider's verdict means for the pipeline: which status to write, whether to retry and when."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pushstream.providers.outcome import Action, Verdict


@dataclass(frozen=True, slots=True)
class Disposition:
    status: str  # a contract status
    reason: str | None
    retry_at: float | None = None  # epoch seconds, when status == "retrying"
    dead_letter: bool = False  # also keep the delivery in the DLQ
    deactivate: bool = False  # the device's token is dead


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter over [delay/2, delay]: spreads a burst of retries."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return (rng or random).uniform(delay / 2, delay)


def dispose(verdict: Verdict, *, attempt: int, max_attempts: int, now: float, base: float, cap: float,
            expires_at: float | None = None, rng: random.Random | None = None,
            now_or_never: bool = False) -> Disposition:
    """The pipeline's answer to one verdict for one device on its ``attempt``-th try.

    ``now_or_never`` (a ``ttl: 0`` notification): an answer that asks to try again later ends the delivery
    as ``failed``/``expired`` instead, final and not dead-lettered: any later attempt, a redrive included,
    would break the "now or never" the sender asked for.
    """
    action = verdict.action
    if action is Action.DELIVERED:
        return Disposition("delivered", None)
    if action is Action.INVALID_TOKEN:
        return Disposition("invalid_token", verdict.reason, deactivate=True)
    if action is Action.FAILED:
        if verdict.reason == "expired":
            return Disposition("suppressed", "expired")
        return Disposition("failed", verdict.reason, dead_letter=True)
    if action is Action.FATAL_CONFIG:
        return Disposition("dead_lettered", verdict.reason or "fatal_config", dead_letter=True)
    # RETRY and REAUTH: try again later unless out of attempts or out of time.
    if now_or_never:
        return Disposition("failed", "expired")
    if attempt >= max_attempts:
        return Disposition("dead_lettered", f"retries_exhausted:{verdict.reason}", dead_letter=True)
    delay = max(backoff_delay(attempt, base, cap, rng), verdict.retry_after or 0.0)
    retry_at = now + delay
    if expires_at is not None and retry_at > expires_at:
        return Disposition("suppressed", "expired")
    return Disposition("retrying", verdict.reason, retry_at=retry_at)
