"""Local-time sends in the router: a step's users grouped by zone, one schedule entry per (partition, step, zone).

The intent of a `send_at_local` notification is routed like any other until the user loop: instead of fanning
out, the router asks `rules.localtime.split_by_zone` when each zone's users are due and schedules the zone's
users as one intent (its notification carrying `local_zone`, so routing it when it fires fans out as usual).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pushstream import metrics
from pushstream.agents.io import Context, Outbox
from pushstream.models import IntentBatch, ScheduleCommands, StatusEvent
from pushstream.models.base import iso
from pushstream.models.internal import add_command
from pushstream.rules.keys import user_key
from pushstream.rules.localtime import PASSED_REASON, split_by_zone
from pushstream.tables import table_key


def schedule_by_zone(ctx: Context, intent: IntentBatch, partition: int, outbox: Outbox, now: dt.datetime,
                     users: Iterable[tuple[str, dict[str, Any] | None]], prefix: str) -> None:
    """Schedule ``users`` (one routing step of this partition) at their local time; ``prefix`` is the step's
    deterministic identity, so a step routed again after a crash writes the same schedule keys."""
    n = intent.notification
    app_id, nid = n["app_id"], n["id"]
    preferences = ctx.tables.preferences
    app_settings = ctx.rt.settings.app(app_id)
    # default_timezone is added to the app settings on another branch: read defensively, UTC without it.
    default_zone = getattr(app_settings, "default_timezone", None)
    step = [(user_id, devices or {}, preferences.get(table_key(user_key(app_id, user_id))))
            for user_id, devices in users]
    groups, skipped = split_by_zone(n, step, now, default_zone)
    commands = []
    for zone, (due, user_ids) in sorted(groups.items()):
        fired = {**n, "local_zone": zone, "received_at": due.timestamp()}  # the TTL runs from the send
        later = IntentBatch(notification=fired, user_ids=user_ids, origin=f"{prefix}/{zone}")
        commands.append(add_command(due.timestamp(), f"{app_id}/{nid}/{prefix}/{zone}", later))
    if commands:
        outbox.add(ctx.topics.schedule, ScheduleCommands(commands=commands), key=f"{app_id}/{nid}",
                   partition=partition)
    at = iso(now)
    for user_id, device_id, platform in skipped:
        outbox.add(ctx.topics.status_out, StatusEvent(notification_id=nid, app_id=app_id, user_id=user_id,
                                                      device_id=device_id, platform=platform,
                                                      status="suppressed", reason=PASSED_REASON, at=at),
                   key=user_id)
    if skipped:
        metrics.count_statuses(Counter((p, "suppressed", PASSED_REASON) for _, _, p in skipped))
        ctx.add_progress(outbox, [{"app_id": app_id, "notification_id": nid, "user_id": user_id, "device_id": device_id,
                                   "status": "suppressed", "reason": PASSED_REASON, "at": at}
                                  for user_id, device_id, _ in skipped])
