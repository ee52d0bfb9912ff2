"""What routing one step of an intent writes, as plain values: accumulated user by user, then chunked.

The router fans each user out (`rules.fanout.fan_out_user`) and hands the result to a `RoutePlan`, which turns
it into what the step writes: a status record and a progress entry per device that gets no delivery, a dead
letter per device the router cannot hand to a sender, a quiet-hours schedule command per deferred user, and the
items of each (platform, A/B variant). `delivery_batches` cuts those items into `DeliveryBatch`es with ids that
follow from the step, so a step routed again yields the same batches. Nothing here touches Kafka or a table.

This is the router's hot path: the work per delivered device is one ``extend`` of the user's items; a status,
a progress entry and a dead letter are built only for devices that are not sent to.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pushstream.models import DeliveryBatch, IntentBatch, ScheduleCommands, StatusEvent
from pushstream.models.dlq import DeadLetter, undeliverable
from pushstream.models.internal import add_command, share_payloads
from pushstream.models.status import Status
from pushstream.models.values import DeliveryItem
from pushstream.rules.fanout import UserFanOut
from pushstream.rules.keys import user_key

_DEAD_LETTERED = Status.DEAD_LETTERED

Source = tuple[str, "int | None", "int | None"]  # topic, partition, offset of the intent being routed


class RoutePlan:
    """One routing step's outcome for a notification: ``add`` each user's fan-out, then write what it holds.

    ``origin`` is the intent's (quiet-hours re-deliveries extend it, dead letters name it)."""

    __slots__ = ("app_id", "at", "batches", "notification", "notification_id", "origin", "progress", "schedules",
                 "statuses", "tally", "undeliverable")

    def __init__(self, notification: dict[str, Any], *, at: str, origin: str | None) -> None:
        self.notification, self.at, self.origin = notification, at, origin
        self.app_id: str = notification["app_id"]
        self.notification_id: str = notification["id"]
        self.batches: dict[tuple[str, str | None], list[DeliveryItem]] = {}  # (platform, A/B variant) → items
        self.tally: Counter[tuple[str, str, str]] = Counter()  # (platform, status, reason) of the statuses
        self.statuses: list[StatusEvent] = []  # key: the user id
        self.progress: list[dict[str, Any]] = []  # the statuses again, for campaign progress
        # (user id, device id, reason, device) of the dead-lettered devices: `dead_letters` writes them
        self.undeliverable: list[tuple[str, str, str | None, dict[str, Any]]] = []
        self.schedules: list[tuple[str, ScheduleCommands]] = []  # (user key, command) for the schedule

    def add(self, user_id: str, variant: str | None, result: UserFanOut, devices: dict[str, Any]) -> None:
        """One user's fan-out (``devices``: the user's registry entry, for the dead letters' device)."""
        batches = self.batches
        for platform, items in result.deliveries.items():
            queued = batches.get((platform, variant))
            if queued is None:
                batches[(platform, variant)] = list(items)
            else:
                queued.extend(items)
        if result.outcomes:
            self._outcomes(user_id, variant, result, devices)
        if result.deferred_until is not None:
            # Quiet hours: the deferred devices get the notification when they end.
            n = self.notification
            later = IntentBatch(notification=n, user_ids=[user_id], origin=f"{self.origin}/quiet/{user_id}",
                                devices={user_id: result.deferred})
            ident = f"{self.app_id}/{self.notification_id}/{user_id}/quiet"
            command = ScheduleCommands(commands=[add_command(result.deferred_until.timestamp(), ident, later)])
            self.schedules.append((user_key(self.app_id, user_id), command))

    def _outcomes(self, user_id: str, variant: str | None, result: UserFanOut, devices: dict[str, Any]) -> None:
        app_id, nid, at, tally = self.app_id, self.notification_id, self.at, self.tally
        for device_id, platform, status, reason in result.outcomes:
            tally[(platform, status, reason or "")] += 1
            self.statuses.append(StatusEvent(notification_id=nid, app_id=app_id, user_id=user_id,
                                             device_id=device_id, platform=platform, status=status, reason=reason,
                                             at=at, variant=variant))
            self.progress.append({"app_id": app_id, "notification_id": nid, "user_id": user_id,
                                  "device_id": device_id, "status": status, "at": at, "reason": reason,
                                  "variant": variant})
            if status == _DEAD_LETTERED:
                self.undeliverable.append((user_id, device_id, reason, devices.get(device_id, {})))

    def dead_letters(self, source: Source) -> list[DeadLetter]:
        """One dead letter per dead-lettered device (keyed by its user id), naming ``source``: where the intent
        being routed was read (topic, partition, offset)."""
        topic, partition, offset = source
        return [undeliverable(reason or "undeliverable", topic=topic, partition=partition, offset=offset,
                              notification=self.notification, user_id=user_id, device_id=device_id, device=device,
                              origin=self.origin)
                for user_id, device_id, reason, device in self.undeliverable]


def delivery_batches(notification: dict[str, Any], batches: dict[tuple[str, str | None], list[DeliveryItem]], *,
                     prefix: str, chunk: int) -> list[DeliveryBatch]:
    """The step's items per (platform, A/B variant) in batches of at most ``chunk`` devices, each with the id
    ``<prefix>/<platform>[/v:<variant>]/<n>`` and its items' payloads shared (`models.internal.share_payloads`)."""
    n = notification
    nid, app_id, channel, ttl = n["id"], n["app_id"], n["channel"], n.get("ttl")
    expires_at = None if ttl is None else n["received_at"] + ttl
    out = []
    for (platform, variant), items in batches.items():
        kind = platform if variant is None else f"{platform}/v:{variant}"
        for start in range(0, len(items), chunk):
            shared, payloads = share_payloads(items[start:start + chunk])
            out.append(DeliveryBatch(notification_id=nid, app_id=app_id, platform=platform, channel=channel,
                                     priority=n["priority"], items=shared, payloads=payloads, expires_at=expires_at,
                                     collapse_key=n.get("collapse_key"), batch_id=f"{prefix}/{kind}/{start // chunk}",
                                     received_at=n.get("received_at"), ttl=ttl, variant=variant))
    return out
