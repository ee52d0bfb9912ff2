"""The words every layer shares: platforms, lanes, and what a local-time send does when its time has passed."""

from enum import StrEnum


class Platform(StrEnum):
    APNS = "apns"
    FCM = "fcm"
    WEBPUSH = "webpush"


class Lane(StrEnum):
    TRANSACTIONAL = "transactional"  # OTPs, receipts: never waits behind a campaign
    BULK = "bulk"  # marketing campaigns


PLATFORMS: tuple[str, ...] = tuple(p.value for p in Platform)
LANES: tuple[str, ...] = tuple(lane.value for lane in Lane)

# `send_at_local.if_passed` (contract §1): what happens to a user whose local time already passed today.
IF_PASSED = ("tomorrow", "skip")
DEFAULT_IF_PASSED = "tomorrow"
