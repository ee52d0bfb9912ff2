"""Wire records: one faust.Record type per topic, plus pure parsing and validation of external input."""

from pushstream.models.base import Invalid, decode, encode
from pushstream.models.dlq import DeadLetter
from pushstream.models.internal import DeliveryBatch, IntentBatch, ScheduleCommands, TokenClaims, UserEvents
from pushstream.models.notifications import NotificationRequest, parse_notification
from pushstream.models.registry import DeviceEvent, PreferenceEvent, parse_device_event, parse_preference_event
from pushstream.models.status import Status, StatusEvent

__all__ = [
    "DeadLetter",
    "DeliveryBatch",
    "DeviceEvent",
    "IntentBatch",
    "Invalid",
    "NotificationRequest",
    "PreferenceEvent",
    "ScheduleCommands",
    "Status",
    "StatusEvent",
    "TokenClaims",
    "UserEvents",
    "decode",
    "encode",
    "parse_device_event",
    "parse_notification",
    "parse_preference_event",
]
