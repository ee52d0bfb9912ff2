"""Cancel at each stage: the verdict overrule, one user's fan-out, the router's memory, the planner's fan-out."""

from __future__ import annotations

import dataclasses
import datetime as dt
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from pushstream.agents.io import Outbox
from pushstream.agents.planner import plan_batch
from pushstream.agents.router import route_event
from pushstream.config import PipelineSettings
from pushstream.models import IntentBatch, Invalid, encode
from pushstream.models.cancel import is_cancel, parse_cancel
from pushstream.models.values import Devices, Preferences, UserState
from pushstream.rules.cancel import CANCELLED, cancel_key, is_cancelled, overrule
from pushstream.rules.fanout import fan_out_user
from pushstream.rules.preferences import record_sent
from pushstream.rules.routing import DELIVER, SKIP, RouteDecision
from pushstream.tables import table_key
from tests.unit.factories import device, notification, settings
from tests.unit.router_fakes import FakeProducer, FakeTopic, GatedOutbox, RocksTable, context

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=1)


@pytest.mark.parametrize(("verdict", "expected"), [
    (DELIVER, CANCELLED),
    (RouteDecision("deferred", "quiet_hours", LATER), CANCELLED),
    (RouteDecision("suppressed", "duplicate"), SKIP),
    (RouteDecision("suppressed", "opt_out"), RouteDecision("suppressed", "opt_out")),
    (RouteDecision("suppressed", "frequency_cap"), RouteDecision("suppressed", "frequency_cap")),
    (RouteDecision("suppressed", "inactive"), RouteDecision("suppressed", "inactive")),
    (RouteDecision("suppressed", "expired"), RouteDecision("suppressed", "expired")),
    (SKIP, SKIP),
])
def test_overrule_each_verdict(verdict: RouteDecision, expected: RouteDecision) -> None:
    assert overrule(verdict) == expected


def test_a_cancel_is_remembered_without_expiry() -> None:
    assert not is_cancelled(None)
    assert is_cancelled({"at": 0.0})
    assert cancel_key("demo", "n-42") == "demo/n-42"


def render(platform: str, locale: str | None) -> dict[str, Any]:
    return {"aps": {"alert": "x"}}


def fan(n: dict[str, Any], devices: Devices, *, prefs: Preferences | None = None,
        state: UserState | None = None, cancelled: bool, only: list[str] | None = None) -> Any:
    return fan_out_user(n, "demo", "u-1", devices, prefs, state, NOW, configured=lambda p: True, render=render,
                        origin="notifications:0:1", only_devices=only, cancelled=cancelled)


def test_routing_a_cancelled_notification_suppresses_every_device_it_would_reach() -> None:
    devices = {"d-1": device("d-1"), "d-2": device("d-2", "fcm")}
    sent = fan(notification(), devices, cancelled=False)
    assert sorted(sent.deliveries) == ["apns", "fcm"]
    result = fan(notification(), devices, cancelled=True)
    assert result.deliveries == {}
    assert sorted(result.outcomes) == [("d-1", "apns", "suppressed", "cancelled"),
                                       ("d-2", "fcm", "suppressed", "cancelled")]
    # The user's memory records the outcome: a replay of the request adds nothing.
    assert result.state is not None and "n-42" in result.state["sent"]


def test_a_deferred_device_fired_after_its_cancel_is_cancelled() -> None:
    marketing = notification(channel="marketing", priority="normal")
    quiet: Preferences = {"quiet_hours": {"start": "00:00", "end": "23:59"}, "timezone": "UTC"}
    assert fan(marketing, {"d-1": device()}, prefs=quiet, cancelled=False).outcomes[0][2] == "deferred"
    assert fan(marketing, {"d-1": device()}, prefs=quiet, cancelled=True).outcomes == [
        ("d-1", "apns", "suppressed", "cancelled")]
    # The re-delivery after quiet hours (only_devices): the user's memory of the notification is no duplicate.
    state = record_sent(None, "n-42", None, None, NOW.timestamp(), "notifications:0:0")
    fired = fan(marketing, {"d-1": device(), "d-2": device("d-2")}, state=state, cancelled=True, only=["d-1"])
    assert fired.outcomes == [("d-1", "apns", "suppressed", "cancelled")]


def test_cancelling_a_delivered_notification_adds_no_status() -> None:
    state = record_sent(None, "n-42", "transactional", None, NOW.timestamp(), "notifications:0:0")
    result = fan(notification(), {"d-1": device()}, state=state, cancelled=True)
    assert result.outcomes == [] and result.deliveries == {} and result.state is None


def test_devices_that_would_not_get_it_anyway_keep_their_reason() -> None:
    result = fan(notification(channel="marketing"), {"d-1": device(), "d-2": device("d-2", active=False)},
                 prefs={"channels": {"marketing": False}}, cancelled=True)
    assert sorted(result.outcomes) == [("d-1", "apns", "suppressed", "opt_out"),
                                       ("d-2", "apns", "suppressed", "inactive")]


# The router: the cancel intent is remembered per partition; every later step and firing consults it -----------
def intent_event(tp: Any, offset: int, intent: IntentBatch) -> Any:
    return SimpleNamespace(value=encode(intent), message=SimpleNamespace(tp=tp, topic="intents", partition=0,
                                                                         offset=offset))


def cancel_intent() -> IntentBatch:
    return IntentBatch(notification={"app_id": "demo", "id": "n-42", "at": NOW.timestamp()}, cancel=True,
                       origin="notifications:0:9")


def statuses(outbox: GatedOutbox) -> list[tuple[str, str | None]]:
    out = []
    for topic, _key, value in outbox.records:
        if topic == "status":
            out.append((value.status, value.reason))
    return out


def router_ctx(outboxes: list[GatedOutbox]) -> tuple[Any, Any]:
    ctx, tp = context(outboxes)
    ctx.app.producer = FakeProducer()
    return ctx, tp


async def test_the_router_remembers_a_cancel_and_suppresses_what_comes_after_it() -> None:
    outboxes = [GatedOutbox(None, [], "transactional")]
    outbox = outboxes[0]
    ctx, tp = router_ctx(outboxes)
    await route_event(ctx, intent_event(tp, 1, cancel_intent()))
    assert is_cancelled(ctx.tables.cancelled.get(table_key("demo/n-42")))
    assert len(outboxes) == 1  # the cancel itself routes nothing
    n = notification(received_at=dt.datetime.now(dt.UTC).timestamp())
    await route_event(ctx, intent_event(tp, 2, IntentBatch(notification=n, user_ids=["u-1"],
                                                           origin="notifications:0:1")))
    assert outboxes == []
    assert statuses(outbox) == [("suppressed", "cancelled")]
    assert not any(topic.startswith("deliveries") for topic, _k, _v in outbox.records)


async def test_a_scheduled_intent_fired_after_its_cancel_is_suppressed() -> None:
    outboxes = [GatedOutbox(None, [], "transactional"), GatedOutbox(None, [], "bulk")]
    ctx, tp = router_ctx(outboxes)
    fired_outbox = outboxes[0]
    await route_event(ctx, intent_event(tp, 1, cancel_intent()))
    # What the scheduler sends to `intents` when send_at (or the end of quiet hours) comes: the same intent.
    n = notification(channel="marketing", received_at=dt.datetime.now(dt.UTC).timestamp())
    fired = IntentBatch(notification=n, user_ids=["u-1"], origin="notifications:0:1/quiet/u-1",
                        devices={"u-1": ["d-1"]})
    await route_event(ctx, intent_event(tp, 2, fired))
    assert statuses(fired_outbox) == [("suppressed", "cancelled")]


async def test_a_broadcast_stops_at_the_first_step_after_the_cancel() -> None:
    users = {table_key(f"demo/u-{i}"): {"d-1": device()} for i in range(6)}
    outboxes = [GatedOutbox(None, [], "bulk") for _ in range(3)]
    ctx, tp = router_ctx(outboxes)
    ctx.rt.settings = dataclasses.replace(ctx.rt.settings, pipeline=PipelineSettings(broadcast_step_users=2))
    seen = list(outboxes)
    devices = RocksTable("devices")
    db = devices._db_for_partition(0)
    for key, value in users.items():
        db[key] = orjson.dumps(value)
    ctx.tables.devices = devices
    # The cancel lands while the first step waits for its flush (another agent on the same partition).
    original_flush = seen[0].flush

    async def flush_then_cancel(*, wait: bool = True) -> None:
        await original_flush(wait=wait)
        db_cancel = ctx.tables.cancelled._db_for_partition(0)
        db_cancel[table_key("demo/n-42")] = orjson.dumps({"at": NOW.timestamp()})

    seen[0].flush = flush_then_cancel  # type: ignore[method-assign]
    n = notification(target={"all": True}, received_at=dt.datetime.now(dt.UTC).timestamp())
    await route_event(ctx, intent_event(tp, 1, IntentBatch(notification=n, broadcast=True,
                                                           origin="notifications:0:1")))
    assert statuses(seen[0]) == []  # delivered by the sender: no status from the router
    assert sum(len(v.items) for t, _k, v in seen[0].records if t.startswith("deliveries")) == 2
    assert statuses(seen[1]) + statuses(seen[2]) == [("suppressed", "cancelled")] * 4
    assert not any(t.startswith("deliveries") for o in seen[1:] for t, _k, _v in o.records)


# Parsing and planning -------------------------------------------------------------------------------------------
def test_parse_cancel() -> None:
    assert is_cancel({"type": "cancel"}) and not is_cancel({"id": "n-1"})
    assert parse_cancel({"type": "cancel", "app_id": "demo", "id": "n-42"}, settings()) == ("demo", "n-42")
    cases: list[tuple[Any, str]] = [({"type": "cancel", "app_id": "demo"}, "missing_field"),
                                    ({"type": "cancel", "app_id": "nope", "id": "n"}, "unknown_app"),
                                    ({"type": "cancel", "app_id": "demo", "id": "n", "title": "x"}, "unknown_field"),
                                    ({"type": "cancel", "app_id": "demo", "id": 7}, "bad_field")]
    for bad, reason in cases:
        with pytest.raises(Invalid) as caught:
            parse_cancel(bad, settings())
        assert caught.value.reason == reason


def planner_ctx(partitions: int = 4) -> Any:
    topics = SimpleNamespace(intents={"transactional": FakeTopic("intents"), "bulk": FakeTopic("intents.bulk")},
                             schedule=FakeTopic("schedule"), dlq=FakeTopic("dlq"), audit=FakeTopic("audit"))
    rt = SimpleNamespace(settings=settings(), layout=SimpleNamespace(user_partitions=partitions))
    return SimpleNamespace(rt=rt, topics=topics, app=None)


def message_event(value: dict[str, Any], offset: int, headers: Any = None) -> Any:
    raw = orjson.dumps(value)
    return SimpleNamespace(message=SimpleNamespace(topic="notifications", partition=1, offset=offset, key=b"n",
                                                   value=raw, timestamp=NOW.timestamp(), headers=headers), value=raw)


def test_the_planner_sends_a_cancel_to_every_partition_on_the_transactional_lane() -> None:
    ctx = planner_ctx()
    outbox = Outbox(ctx)
    plan_batch(ctx, [message_event({"type": "cancel", "app_id": "demo", "id": "n-42"}, 7)], outbox)
    pending = outbox._pending
    assert [(topic, partition) for topic, _k, _v, partition in pending] == [("intents", p) for p in range(4)]
    for _topic, key, value, _p in pending:
        intent = orjson.loads(value)
        assert key == b"demo/n-42" and intent["cancel"] is True
        assert intent["notification"] == {"app_id": "demo", "id": "n-42", "at": NOW.timestamp()}
        assert intent["origin"] == "notifications:1:7"


def test_a_malformed_cancel_is_dead_lettered() -> None:
    ctx = planner_ctx()
    outbox = Outbox(ctx)
    plan_batch(ctx, [message_event({"type": "cancel", "app_id": "demo"}, 3)], outbox)
    [(topic, _k, value, _p)] = outbox._pending
    assert topic == "dlq" and orjson.loads(value)["reason"] == "missing_field"
