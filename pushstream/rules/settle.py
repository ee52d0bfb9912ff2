"""Settling a sent batch: what one verdict per device turns into, as plain values.

A sender sends a `DeliveryBatch`, gets one verdict per device from the provider's classification table, and
hands both here. The result says exactly what to write: a status record per device, at most one retry batch,
dead letters (address redacted by `models.redact`) and deactivations for dead tokens. Nothing here touches Kafka.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pushstream.models.internal import DeliveryBatch
from pushstream.models.outcome import Verdict
from pushstream.models.redact import redact
from pushstream.models.status import Status
from pushstream.models.values import DeliveryItem
from pushstream.rules.breaker import HOLD_REASONS, held_batch_id, hold
from pushstream.rules.delivery import Disposition, dispose
from pushstream.rules.registry import address_fingerprint
from pushstream.rules.retry import RetryPolicy, band_for

__all__ = ["NOT_CONFIGURED", "RetryPolicy", "Settlement", "retry_batch_id", "settle"]

NOT_CONFIGURED = Disposition(Status.DEAD_LETTERED, "platform_not_configured", dead_letter=True)


@dataclass
class Settlement:
    """Everything one sent batch writes. ``statuses`` hold one contract status record per device."""

    statuses: list[dict[str, Any]] = field(default_factory=list)
    retry: DeliveryBatch | None = None
    retry_band: int | None = None  # the delay band (`rules.retry.band_for`) whose topic the retry waits in
    # (key, record) pairs: the record is the DLQ entry's ``value`` (the redacted delivery), the caller wraps it.
    dead_letters: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    deactivations: list[dict[str, Any]] = field(default_factory=list)
    tally: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # Devices held back unsent (or their answer held) by a breaker, the invalidation guard or a rate limit:
    # a retry batch of the *same* attempt (waiting is not trying), due when the hold ends.
    held: DeliveryBatch | None = None


def retry_batch_id(batch: DeliveryBatch) -> str:
    """A retry's identity follows from its parent's: a re-settled parent yields the same retry."""
    return f"{batch.batch_id or batch.notification_id}/a{batch.attempt + 1}"


def settle(batch: DeliveryBatch, verdicts: Sequence[Verdict | None], *, now: float, at: str,
           policy: RetryPolicy, rng: random.Random | None = None) -> Settlement:
    """The outcome of one batch; ``None`` verdicts mean the app has no client for the platform."""
    if len(verdicts) != len(batch.items):
        raise ValueError(f"{len(verdicts)} verdicts for {len(batch.items)} items")
    out = Settlement()
    retry_items: list[DeliveryItem] = []
    retry_at = 0.0
    held_items: list[DeliveryItem] = []
    held_at = 0.0
    platform, variant = batch.platform, batch.variant
    for item, verdict in zip(batch.items, verdicts, strict=True):
        fingerprint = address_fingerprint(platform, item)
        if verdict is None:
            disposition = NOT_CONFIGURED
        elif verdict.reason in HOLD_REASONS:
            disposition = hold(verdict, now=now, expires_at=batch.expires_at, now_or_never=batch.ttl == 0)
            if disposition.retry_at is not None:
                held_items.append(item)
                held_at = max(held_at, disposition.retry_at)
        else:
            disposition = dispose(verdict, attempt=batch.attempt, max_attempts=policy.max_attempts, now=now,
                                  base=policy.base, cap=policy.cap, expires_at=batch.expires_at, rng=rng,
                                  now_or_never=batch.ttl == 0, retry_after_cap=policy.retry_after_cap,
                                  attempts_by_class=policy.attempts_by_class)
        status, reason = disposition.status, disposition.reason
        out.tally[(platform, status, reason or "")] += 1
        status_record: dict[str, Any] = {
            "notification_id": batch.notification_id, "app_id": batch.app_id, "user_id": item["user_id"],
            "device_id": item["device_id"], "platform": platform, "status": status, "at": at, "reason": reason,
            "provider_status": verdict.provider_status if verdict is not None else None,
            "attempt": batch.attempt, "token_fingerprint": fingerprint,
        }
        if variant is not None:
            status_record["variant"] = variant
        out.statuses.append(status_record)
        if disposition.deactivate:
            # Feedback: the registry deactivates the device only if it still holds this token.
            out.deactivations.append({
                "kind": "deactivate", "app_id": batch.app_id, "user_id": item["user_id"],
                "device_id": item["device_id"], "fingerprint": fingerprint,
                "reason": f"{platform}:{reason or 'invalid_token'}", "at": at})
        if disposition.retry_at is not None and disposition.reason not in HOLD_REASONS:
            retry_items.append(item)
            retry_at = max(retry_at, disposition.retry_at)
        if disposition.dead_letter:
            # The payload stays, the address does not: the DLQ is read by people.
            redacted = redact(item, platform)
            detail = verdict.detail if verdict is not None and verdict.detail else (reason or "")
            record = {"notification_id": batch.notification_id, "app_id": batch.app_id, "platform": platform,
                      "attempt": batch.attempt, "item": redacted, "token_fingerprint": fingerprint}
            out.dead_letters.append((item["user_id"], reason or "undeliverable", detail, record))
    if retry_items:
        out.retry = DeliveryBatch(**{**batch.asdict(), "items": retry_items, "attempt": batch.attempt + 1,
                                     "not_before": retry_at, "batch_id": retry_batch_id(batch)})
        out.retry_band = band_for(retry_at - now)
    if held_items:
        out.held = DeliveryBatch(**{**batch.asdict(), "items": held_items, "not_before": held_at,
                                    "batch_id": held_batch_id(batch)})
    return out
