"""Per-app hooks: loading (a missing one names itself), verdicts, raise and time budget, the router's use of
pre_send, the sender's post_send queue, and the shipped example."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import pytest

from pushstream import metrics
from pushstream.agents.router import route_event
from pushstream.config import ConfigError, HooksSettings
from pushstream.hooks import KEEP, AppHooks, adjust, drop, load_hooks
from pushstream.hooks.examples import quiet_vips_and_utm
from pushstream.hooks.runner import PostSendQueue, pre_send_verdict
from pushstream.models.internal import inline_payloads
from pushstream.rules.hooks import ERROR, PreSend, interpret
from pushstream.tables import table_key
from tests.unit.factories import device, notification, settings
from tests.unit.router_fakes import USER, GatedOutbox, context, event

N = notification(channel="marketing", priority="normal", data={"sku": "1"}, target={"all": True})


def hooked(**hooks: Any) -> Any:
    s = settings()
    app = dataclasses.replace(s.apps["demo"], hooks=HooksSettings(**hooks))
    return dataclasses.replace(s, apps={"demo": app})


def errors(hook: str) -> float:
    return metrics.hook_errors.labels("demo", hook)._value.get()


# --- verdicts ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "expected"), [
    (None, KEEP), (KEEP, KEEP), (drop("vip_quiet"), drop("vip_quiet")), (adjust(), KEEP),
    (adjust(title="t", data={"a": "b"}), adjust(title="t", data={"a": "b"})),
    (drop(""), ERROR), (drop("x" * 65), ERROR), (adjust(token="x"), ERROR), (adjust(title=3), ERROR),
    (adjust(data={"a": 1}), ERROR), (adjust(data="a"), ERROR), (True, ERROR), ("drop", ERROR),
    (PreSend("explode"), ERROR),
])
def test_interpret(answer: Any, expected: PreSend) -> None:
    assert interpret(answer) == expected


# --- loading ----------------------------------------------------------------------------------------------

def test_load_hooks_imports_the_callables() -> None:
    loaded = load_hooks(hooked(pre_send="pushstream.hooks.examples:quiet_vips_and_utm",
                               post_send="pushstream.hooks.examples:record_outcomes"))
    assert loaded["demo"].pre_send is quiet_vips_and_utm and not loaded["demo"].pre_send_async
    assert load_hooks(settings()) == {} and load_hooks(hooked()) == {}


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module_xyz:f", "apps.demo.hooks.pre_send: cannot import module 'no_such_module_xyz'"),
    ("pushstream.hooks.examples:missing", "apps.demo.hooks.pre_send: module 'pushstream.hooks.examples' has no "
                                          "attribute 'missing'"),
    ("pushstream.hooks.examples", "is not 'package.module:function'"),
    ("pushstream.hooks.examples:QUIET_TAG", "is not callable"),
])
def test_a_missing_hook_stops_start_up_naming_it(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_hooks(hooked(pre_send=spec))
    assert message in str(excinfo.value)


# --- calling pre_send -------------------------------------------------------------------------------------

def app_hooks(fn: Any, budget: float = 0.05) -> AppHooks:
    return AppHooks(fn, None, budget, pre_send_async=asyncio.iscoroutinefunction(fn))


def verdict(fn: Any, budget: float = 0.05) -> PreSend:
    return asyncio.run(pre_send_verdict("demo", app_hooks(fn, budget), N, {"user_id": "u-1"}, device()))


def test_a_raising_hook_is_an_error_and_counted() -> None:
    before = errors("pre_send")

    def boom(*_: Any) -> PreSend:
        raise RuntimeError("boom")

    assert verdict(boom) is ERROR and errors("pre_send") == before + 1


def test_a_slow_hook_is_an_error_sync_measured_async_cut_off() -> None:
    before = errors("pre_send")

    def slow(*_: Any) -> PreSend:
        t = dt.datetime.now()
        while (dt.datetime.now() - t).total_seconds() < 0.02:
            pass
        return KEEP

    async def slow_async(*_: Any) -> PreSend:
        await asyncio.Event().wait()  # never answers: cut off at the budget
        return KEEP

    async def fast_async(*_: Any) -> PreSend:
        return drop("later")

    assert verdict(slow, budget=0.005) is ERROR
    assert verdict(slow_async, budget=0.01) is ERROR
    assert verdict(fast_async) == drop("later")
    assert verdict(lambda *_: None) == KEEP
    assert verdict(lambda *_: 42) is ERROR
    assert errors("pre_send") == before + 3


def test_the_example_hook() -> None:
    quiet = device(tags=["vip_quiet"])
    assert quiet_vips_and_utm(N, {}, quiet) == drop("vip_quiet")
    assert quiet_vips_and_utm(N, {}, device()) == adjust(
        data={"sku": "1", "utm_source": "push", "utm_campaign": "n-42"})
    assert quiet_vips_and_utm({**N, "channel": "transactional"}, {}, quiet) == KEEP


# --- in the router ----------------------------------------------------------------------------------------

def route_with(fn: Any, devices: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    outbox = GatedOutbox(None, [], "transactional")
    ctx, tp = context([outbox], devices=devices)
    ctx.rt.hooks = {"demo": app_hooks(fn)}
    asyncio.run(route_event(ctx, event(tp, 3)))
    return outbox.records


def test_the_router_applies_pre_send_per_device() -> None:
    devices = {"d-1": device("d-1", tags=["vip_quiet"]), "d-2": device("d-2", platform="fcm"),
               "d-3": device("d-3", tags=["boom"]), "d-4": device("d-4", platform="fcm", tags=["utm"])}
    seen: list[tuple[str, str]] = []

    def hook(n: Any, user: Any, d: Any) -> PreSend:
        seen.append((user["user_id"], d["device_id"]))
        assert "token" not in d
        if "vip_quiet" in d["tags"]:
            return drop("vip_quiet")
        if "boom" in d["tags"]:
            raise ValueError("bad hook")
        if "utm" in d["tags"]:
            return adjust(data={"utm_source": "push"})
        return KEEP

    records = route_with(hook, devices)
    assert sorted(seen) == [("u-1", "d-1"), ("u-1", "d-2"), ("u-1", "d-3"), ("u-1", "d-4")]
    statuses = {r[2].device_id: (r[2].status, r[2].reason) for r in records if r[0] == "status"}
    assert statuses == {"d-1": ("suppressed", "vip_quiet"), "d-3": ("dead_lettered", "hook_error")}
    dead = [r[2] for r in records if r[0] == "dlq"]
    assert [d.reason for d in dead] == ["hook_error"]
    deliveries = {item["device_id"]: item for r in records if r[0].startswith("deliveries")
                  for item in inline_payloads(r[2]).items}
    assert set(deliveries) == {"d-2", "d-4"}
    assert '"utm_source": "push"' in str(deliveries["d-4"]["payload"]).replace("'", '"')
    assert "utm_source" not in str(deliveries["d-2"]["payload"])


def test_a_post_send_hook_alone_leaves_routing_as_it_was() -> None:
    outbox = GatedOutbox(None, [], "transactional")
    ctx, tp = context([outbox])
    ctx.rt.hooks = {"demo": AppHooks(None, lambda outcomes: None, 0.05)}  # only a post_send: pre costs nothing
    asyncio.run(route_event(ctx, event(tp, 4)))
    assert [r[0] for r in outbox.records].count("deliveries.apns.transactional") == 1
    assert table_key(USER) in ctx.tables.devices


# --- post_send in the sender ------------------------------------------------------------------------------

def test_post_send_gets_each_poll_in_one_call_and_survives_errors() -> None:
    calls: list[list[dict[str, Any]]] = []

    def record(outcomes: list[dict[str, Any]]) -> None:
        calls.append(outcomes)
        if len(calls) == 2:
            raise RuntimeError("hook down")

    def batch(app_id: str, *statuses: dict[str, Any]) -> tuple[Any, Any]:
        from types import SimpleNamespace
        return SimpleNamespace(app_id=app_id), SimpleNamespace(statuses=list(statuses))

    async def run() -> PostSendQueue:
        queue = PostSendQueue.of({"demo": AppHooks(None, record, 0.5)})
        assert queue is not None and PostSendQueue.of({"demo": AppHooks(lambda *a: None, None, 0.5)}) is None
        queue.start()
        queue.offer([batch("demo", {"d": 1}, {"d": 2}), batch("other", {"d": 9}), batch("demo", {"d": 3})])
        queue.offer([batch("demo", {"d": 4})])
        queue.offer([batch("demo", {"d": 5})])
        queue.offer([batch("other", {"d": 6})])
        await queue.stop()
        return queue

    before = errors("post_send")
    queue = asyncio.run(run())
    assert calls == [[{"d": 1}, {"d": 2}, {"d": 3}], [{"d": 4}], [{"d": 5}]]
    assert queue.delivered == 4 and errors("post_send") == before + 1


def test_a_full_post_send_queue_drops_and_counts() -> None:
    from types import SimpleNamespace

    async def run() -> None:
        queue = PostSendQueue({"demo": AppHooks(None, lambda outcomes: None, 0.5)}, maxsize=1)
        queue.start()
        pair = (SimpleNamespace(app_id="demo"), SimpleNamespace(statuses=[{"d": 1}]))
        queue.offer([pair])
        queue.offer([pair])  # the task has not run yet: the queue is full
        await queue.stop()

    before = errors("post_send")
    asyncio.run(run())
    assert errors("post_send") == before + 1


def test_hooks_in_the_config_file(tmp_path: Any) -> None:
    from pushstream.config import settings_from_mapping

    raw = {"apps": {"demo": {"api_keys": ["k"], "hooks": {"pre_send": "pushstream.hooks.examples:quiet_vips_and_utm",
                                                          "budget_seconds": 0.1}}}}
    s = settings_from_mapping(raw, base_dir=tmp_path)
    assert s.apps["demo"].hooks == HooksSettings(pre_send="pushstream.hooks.examples:quiet_vips_and_utm",
                                                 budget_seconds=0.1)
    with pytest.raises(ConfigError, match=r"apps\.demo\.hooks\.pre_sned: unknown key"):
        settings_from_mapping({"apps": {"demo": {"hooks": {"pre_sned": "x:y"}}}}, base_dir=tmp_path)
