"""What a provider answer means for pushstream: the outcome vocabulary every layer above shares.

A sender turns each device of a `DeliveryBatch` into exactly one `Verdict`; the rules (`rules.settle`,
`rules.delivery`, `rules.retry`, `rules.breaker`) decide from its `Action` whether to write a status, deactivate
a device, schedule a retry or dead-letter. Plain values: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """What to do next with one device of one notification."""

    DELIVERED = "delivered"  # the provider accepted it
    INVALID_TOKEN = "invalid_token"  # the token/subscription is dead: deactivate the device, no retry
    FAILED = "failed"  # permanent for this message (a sender or payload problem): dead-letter, no retry
    RETRY = "retry"  # transient: retry later, no earlier than `retry_after` when given
    REAUTH = "reauth"  # our credentials were stale and are being renewed: retry soon
    FATAL_CONFIG = "fatal_config"  # our credentials/config are wrong: alert and dead-letter until fixed


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of sending one item.

    ``reason`` is the provider's own code when it gave one (``Unregistered``, ``UNREGISTERED``), else a
    pushstream code (``timeout``, ``payload_too_large``, ``http_599``). ``retry_after`` is in seconds.
    """

    action: Action
    reason: str | None = None
    provider_status: int | None = None
    retry_after: float | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of a provider's classification table.

    ``min_retry_after`` is the delay to use when the provider sent no Retry-After (e.g. FCM's "wait at
    least a minute" on quota errors); ``reconnect`` tells the client the connection itself is bad.
    """

    action: Action
    min_retry_after: float | None = None
    reconnect: bool = False


# Transport failures: no HTTP answer at all. Keys are shared by the three providers' tables.
TRANSPORT_TIMEOUT = "timeout"  # the deadline passed without an answer (ambiguous: may have been delivered)
TRANSPORT_CONNECT_FAILED = "connect_failed"  # never reached the provider
TRANSPORT_CONNECTION_LOST = "connection_lost"  # reset/closed mid-request (ambiguous)
# Provably not processed: above a GOAWAY's last_stream_id, REFUSED_STREAM, or never written. Safe to resend.
TRANSPORT_UNPROCESSED = "unprocessed"
TRANSPORT_ERROR = "transport_error"  # any other client-side I/O error
TRANSPORT_KINDS = (
    TRANSPORT_TIMEOUT,
    TRANSPORT_CONNECT_FAILED,
    TRANSPORT_CONNECTION_LOST,
    TRANSPORT_UNPROCESSED,
    TRANSPORT_ERROR,
)
# Checks a sender makes before any network call; nothing was sent.
LOCAL_PAYLOAD_TOO_LARGE = "payload_too_large"
LOCAL_BAD_ADDRESS = "bad_address"  # the item has no usable token / subscription
LOCAL_BAD_PAYLOAD = "bad_payload"  # the item's payload is missing or not a JSON object
LOCAL_EXPIRED = "expired"  # batch.expires_at passed before the send
LOCAL_KINDS = (LOCAL_PAYLOAD_TOO_LARGE, LOCAL_BAD_ADDRESS, LOCAL_BAD_PAYLOAD, LOCAL_EXPIRED)

