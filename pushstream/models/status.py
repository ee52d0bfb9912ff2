"""`pushstream.status`: one record per device per notification outcome (key: user_id)."""

from enum import StrEnum
from typing import Optional

import faust


class Status(StrEnum):
    DELIVERED = "delivered"
    INVALID_TOKEN = "invalid_token"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"


# A device has a final status for a notification once one of these was written.
FINAL_STATUSES = frozenset({Status.DELIVERED, Status.INVALID_TOKEN, Status.FAILED, Status.SUPPRESSED,
                            Status.DEAD_LETTERED})


class StatusEvent(faust.Record, include_metadata=False):
    notification_id: str
    app_id: str
    user_id: str
    device_id: str
    platform: str
    status: str
    at: str
    reason: Optional[str] = None
    provider_status: Optional[int] = None
    attempt: int = 1
    # Added field: which token the outcome is about, so feedback never deactivates a re-registered device.
    token_fingerprint: Optional[str] = None
    # Added field (contract v2): the A/B variant the user got, on every status of a notification with variants.
    variant: Optional[str] = None
