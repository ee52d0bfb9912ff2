"""The router's side of local-time sends: a step's users become one schedule entry per zone, nothing is sent."""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson

from pushstream.agents.router import route_event
from pushstream.models import IntentBatch, decode
from pushstream.models.base import Invalid
from pushstream.models.notifications import parse_notification
from pushstream.rules.keys import user_key
from pushstream.tables import table_key
from tests.unit.factories import device, raw_notification, settings
from tests.unit.router_fakes import GatedOutbox, context, event


def test_a_local_time_intent_is_scheduled_per_zone() -> None:
    outbox = GatedOutbox(None, [], "transactional")
    outboxes = [outbox]
    ctx, tp = context(outboxes, devices={"d-1": device("d-1", timezone="Asia/Kolkata"),
                                         "d-2": device("d-2", platform="fcm", timezone="Europe/Berlin")})
    ctx.tables.devices[table_key(user_key("demo", "u-2"))] = {"d-1": device("d-1", timezone="Asia/Kolkata")}
    ev = event(tp, 7, send_at_local="23:59", if_passed="tomorrow", target={"user_ids": ["u-1", "u-2"]})
    intent = decode(IntentBatch, ev.value)
    intent.user_ids = ["u-1", "u-2"]
    ev.value = orjson.dumps(intent.asdict())
    asyncio.run(route_event(ctx, ev))
    records = outbox.records
    topics = [to for to, _, _ in records]
    assert topics == ["schedule"]  # no delivery, no status: both users wait for 23:59 in Kolkata
    (command,) = records[0][2].commands
    due = dt.datetime.fromtimestamp(command["due"], dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=5.5)))
    assert (due.hour, due.minute) == (23, 59) and due > dt.datetime.now(dt.UTC)
    fired = command["intent"]
    assert fired["user_ids"] == ["u-1", "u-2"] and fired["notification"]["local_zone"] == "Asia/Kolkata"
    assert fired["notification"]["received_at"] == command["due"] and fired["origin"].endswith("/Asia/Kolkata")


def test_requests_with_local_time_are_validated() -> None:
    s = settings()
    ok = parse_notification(raw_notification(send_at_local="09:00", send_on="2026-12-24"), s, received_at=0.0)
    assert (ok.send_at_local, ok.send_on, ok.if_passed) == ("09:00", "2026-12-24", "tomorrow")
    assert parse_notification(raw_notification(), s, received_at=0.0).send_at_local is None
    for bad in ({"send_at_local": "9am"}, {"send_at_local": "09:00", "send_on": "24.12.2026"},
                {"send_at_local": "09:00", "if_passed": "never"}, {"send_on": "2026-12-24"},
                {"if_passed": "skip"}, {"send_at_local": "09:00", "send_at": "2026-12-24T09:00:00Z"},
                {"send_at_local": 900}):
        try:
            parse_notification(raw_notification(**bad), s, received_at=0.0)
        except Invalid as exc:
            assert exc.reason == "bad_field"
        else:
            raise AssertionError(f"accepted {bad}")
