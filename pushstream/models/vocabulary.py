"""The words every layer shares: platforms and lanes."""

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
