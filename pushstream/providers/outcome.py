"""The providers' side of an answer: building verdicts from table rows, Retry-After, counters, the Sender protocol.

The vocabulary itself (`Action`, `Verdict`, `Rule`, the transport and local kinds) is `pushstream.models.outcome`,
shared with the rules that settle verdicts; it is re-exported here for the provider packages.
"""

from __future__ import annotations

import email.utils
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, runtime_checkable

from pushstream.models.outcome import LOCAL_BAD_ADDRESS as LOCAL_BAD_ADDRESS
from pushstream.models.outcome import LOCAL_BAD_PAYLOAD as LOCAL_BAD_PAYLOAD
from pushstream.models.outcome import LOCAL_EXPIRED as LOCAL_EXPIRED
from pushstream.models.outcome import LOCAL_KINDS as LOCAL_KINDS
from pushstream.models.outcome import LOCAL_PAYLOAD_TOO_LARGE as LOCAL_PAYLOAD_TOO_LARGE
from pushstream.models.outcome import TRANSPORT_CONNECT_FAILED as TRANSPORT_CONNECT_FAILED
from pushstream.models.outcome import TRANSPORT_CONNECTION_LOST as TRANSPORT_CONNECTION_LOST
from pushstream.models.outcome import TRANSPORT_ERROR as TRANSPORT_ERROR
from pushstream.models.outcome import TRANSPORT_KINDS as TRANSPORT_KINDS
from pushstream.models.outcome import TRANSPORT_TIMEOUT as TRANSPORT_TIMEOUT
from pushstream.models.outcome import TRANSPORT_UNPROCESSED as TRANSPORT_UNPROCESSED
from pushstream.models.outcome import Action as Action
from pushstream.models.outcome import Rule as Rule
from pushstream.models.outcome import Verdict as Verdict

if TYPE_CHECKING:
    from pushstream.models.internal import DeliveryBatch


# The rows every provider's table shares for answers that never came (transport failures) and requests never
# sent (the sender's own checks): kind → rule. A provider's table lists only where it differs (`no_answer_rows`).
NO_ANSWER_RULES: Mapping[str, Rule] = MappingProxyType({
    TRANSPORT_TIMEOUT: Rule(Action.RETRY),
    TRANSPORT_CONNECT_FAILED: Rule(Action.RETRY),
    TRANSPORT_CONNECTION_LOST: Rule(Action.RETRY),
    TRANSPORT_UNPROCESSED: Rule(Action.RETRY),
    TRANSPORT_ERROR: Rule(Action.RETRY),
    LOCAL_PAYLOAD_TOO_LARGE: Rule(Action.FAILED),
    LOCAL_BAD_ADDRESS: Rule(Action.FAILED),
    LOCAL_BAD_PAYLOAD: Rule(Action.FAILED),
    LOCAL_EXPIRED: Rule(Action.FAILED),
})

K = TypeVar("K", bound=Hashable)


def no_answer_rows(key: Callable[[str], K], overrides: Mapping[str, Rule] | None = None) -> dict[K, Rule]:
    """`NO_ANSWER_RULES` as rows of one provider's table: each kind under that table's ``key(kind)``, with the
    provider's own ``overrides`` (kind → rule) in place of the shared rule."""
    return {key(kind): (overrides or {}).get(kind, rule) for kind, rule in NO_ANSWER_RULES.items()}


def verdict_from_rule(
    rule: Rule,
    *,
    reason: str | None,
    provider_status: int | None,
    retry_after: float | None = None,
    detail: str | None = None,
) -> Verdict:
    """A verdict for a matched rule; a provider's Retry-After wins over the rule's minimum only if longer."""
    delay = None
    if rule.action is Action.RETRY or rule.action is Action.REAUTH:
        candidates = [d for d in (retry_after, rule.min_retry_after) if d is not None]
        delay = max(candidates) if candidates else None
    return Verdict(rule.action, reason, provider_status, delay, detail)


def rule_by_http_class(status: int) -> Rule:
    """The rule for an answer no table row names: 5xx and 429 retry, other 4xx fail, 2xx delivered."""
    if 200 <= status < 300:
        return Rule(Action.DELIVERED)
    if status >= 500 or status == 429:
        return Rule(Action.RETRY)
    return Rule(Action.FAILED)


def parse_retry_after(value: str | float | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta seconds or an HTTP-date (RFC 9110 §10.2.3).

    Unparseable values give None (use your own backoff); dates in the past give 0.
    """
    if value is None:
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


# Upper bounds (seconds) of the provider request latency buckets; one more bucket holds everything above.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class SendCounters:
    """Counters a sender keeps for metrics: requests put on the wire and verdicts by action and reason."""

    sent: int = 0  # requests written to the provider (resends included)
    resent: int = 0  # in-batch resends (GOAWAY-unprocessed, reconnect reasons, re-auth)
    reconnects: int = 0  # connection pools/clients recreated after a stuck or bad connection
    auth_refreshes: int = 0  # tokens/JWTs/VAPID headers signed or fetched
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    # Request latency, bucketed here (a bisect and an add per request) and exported at scrape time.
    latency_bounds: tuple[float, ...] = REQUEST_BUCKETS
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(REQUEST_BUCKETS) + 1))
    latency_sum: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one request's latency (slot taken → answer or deadline)."""
        self.latency_counts[bisect_left(self.latency_bounds, seconds)] += 1
        self.latency_sum += seconds

    def record(self, verdict: Verdict) -> None:
        """Count one final verdict."""
        self.actions[verdict.action.value] += 1
        if verdict.reason:
            self.reasons[verdict.reason] += 1

    def snapshot(self) -> Mapping[str, int]:
        """A flat copy for a metrics exporter: ``sent``, ``action.<name>``, ``reason.<code>`` …"""
        flat = {
            "sent": self.sent,
            "resent": self.resent,
            "reconnects": self.reconnects,
            "auth_refreshes": self.auth_refreshes,
        }
        flat.update({f"action.{k}": v for k, v in self.actions.items()})
        flat.update({f"reason.{k}": v for k, v in self.reasons.items()})
        return flat


@runtime_checkable
class Sender(Protocol):
    """A provider client as the sender agents use it.

    ``send_batch`` returns one verdict per item of the batch, in item order. It never raises for a
    per-item problem (bad token, timeout, provider error) and never hangs: every send has a deadline.
    Cancelling it cancels the in-flight sends.
    """

    platform: str
    counters: SendCounters

    async def start(self) -> None:
        """Open pools and load credentials; raises on unusable configuration (missing/bad key)."""
        ...

    async def send_batch(self, batch: DeliveryBatch) -> list[Verdict]:
        """Send every item of the batch concurrently and classify each answer."""
        ...

    async def close(self) -> None:
        """Close connections; the sender cannot be used afterwards."""
        ...


def after_reauth(verdict: Verdict, renewed: bool) -> Literal["renew", "refused", "done"]:
    """After an answer, for a client that renews its credentials on REAUTH (an FCM OAuth token, a Web Push
    VAPID signature): ``renew`` and resend once; ``refused`` when the renewed ones are refused too (our
    configuration is wrong: FATAL_CONFIG, see BatchSender.refused_after_reauth); else ``done``."""
    if verdict.action is not Action.REAUTH:
        return "done"
    return "refused" if renewed else "renew"


def remaining_ttl(expires_at: float | None, now: float | None = None) -> int | None:
    """Whole seconds until ``expires_at`` (None when the notification never expires); 0 or less is expired."""
    if expires_at is None:
        return None
    now = time.time() if now is None else now
    return int(expires_at) - int(now)
