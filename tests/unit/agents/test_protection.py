"""The sender's protection hooks with a scripted clock: admission, probes, guard holds, rate limits, gauges."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from pushstream.agents.protection import Protection, per_process_rate
from pushstream.config import BreakerSettings, PipelineSettings
from pushstream.models.internal import DeliveryBatch
from pushstream.providers.outcome import Action, Verdict
from tests.unit.factories import settings as make_settings

OK = Verdict(Action.DELIVERED, None, 200)
DOWN = Verdict(Action.RETRY, "ServiceUnavailable", 503)
BAD = Verdict(Action.INVALID_TOKEN, "BadDeviceToken", 400)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def batch(n: int, app_id: str = "demo", platform: str = "apns") -> DeliveryBatch:
    items = [{"user_id": f"u{i}", "device_id": f"d{i}", "token": "ab" * 32, "payload": {}} for i in range(n)]
    return DeliveryBatch(notification_id="n", app_id=app_id, platform=platform, channel="transactional",
                         priority="high", items=items, batch_id="b")


def protection(**pipeline: float) -> tuple[Protection, Clock]:
    settings = make_settings()
    settings = dataclasses.replace(
        settings, breaker=BreakerSettings(open_seconds=2.0, max_open_seconds=8.0, probe_size=3),
        pipeline=dataclasses.replace(PipelineSettings(), **pipeline))  # type: ignore[arg-type]
    clock = Clock()
    return Protection(settings, clock=clock), clock


def send(p: Protection, b: DeliveryBatch, answer: Verdict) -> list[Verdict | None]:
    plan = p.before_send(b)
    verdicts: list[Verdict | None] = [*([answer] * plan.send), *plan.held]
    p.after_send([(b, plan, verdicts)])
    return verdicts


def test_a_failing_provider_opens_the_breaker_and_the_rest_waits_for_the_probe() -> None:
    p, clock = protection()
    send(p, batch(20), DOWN)
    assert p.gauges() == [("demo", "apns", 1, 0)]
    held = send(p, batch(50), OK)
    assert all(v is not None and v.reason == "circuit_open" and v.retry_after == 2.0 for v in held)
    clock.now += 2.0
    plan = p.before_send(batch(50))
    assert plan.send == 3 and plan.probe and len(plan.held) == 47
    p.after_send([(batch(50), plan, [*([OK] * 3), *plan.held])])
    assert p.gauges() == [("demo", "apns", 0, 0)]
    assert p.before_send(batch(50)).send == 50


def test_other_apps_and_providers_are_not_affected() -> None:
    p, _ = protection()
    send(p, batch(20), DOWN)
    assert p.before_send(batch(10, platform="fcm")).send == 10
    assert sorted(p.gauges()) == [("demo", "apns", 1, 0), ("demo", "fcm", 0, 0)]


def test_the_guard_holds_bad_token_answers_opens_the_breaker_and_logs_once(
        caplog: pytest.LogCaptureFixture) -> None:
    p, clock = protection()
    caplog.set_level(logging.WARNING, logger="pushstream.protection")
    verdicts = send(p, batch(25), BAD)
    assert all(v is not None and (v.action, v.reason, v.provider_status) == (Action.RETRY, "circuit_open", 400)
               for v in verdicts)
    assert p.gauges() == [("demo", "apns", 1, 1)]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "demo/apns" in errors[0].getMessage() and "25 of 25" in errors[0].getMessage()
    clock.now += 2.0
    assert [v.reason for v in send(p, batch(25), BAD) if v is not None] == ["circuit_open"] * 25  # probe: still bad
    assert p.gauges() == [("demo", "apns", 1, 1)]
    clock.now += 3.9
    assert p.before_send(batch(5)).send == 0  # the failed probe doubled the wait
    clock.now += 0.1
    verdicts = send(p, batch(25), OK)  # the configuration was fixed: the probe is delivered
    assert verdicts[:3] == [OK] * 3
    assert p.gauges() == [("demo", "apns", 0, 0)]
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_a_few_dead_tokens_wait_the_confirmation_time_then_deactivate() -> None:
    p, clock = protection()
    verdicts = send(p, batch(5), BAD)
    assert {(v.reason, v.retry_after) for v in verdicts if v is not None} == {("invalidation_guard", 5.0)}
    assert p.gauges() == [("demo", "apns", 0, 0)]  # suspicious, not tripped: the breaker stays closed
    clock.now += 5.0
    assert send(p, batch(0), BAD) == []
    assert send(p, batch(3), OK) == [OK] * 3
    assert send(p, batch(5), BAD) == [BAD] * 5  # the confirmation time is over, 20 answers not reached
    assert p.gauges() == [("demo", "apns", 0, 0)]


def test_the_rate_limit_is_shared_by_the_sender_processes_and_halves_on_429() -> None:
    settings = make_settings()
    app = settings.apps["demo"]
    assert app.fcm is not None
    app = dataclasses.replace(app, fcm=dataclasses.replace(app.fcm, rate_limit_per_second=100.0))
    settings = dataclasses.replace(settings, apps={"demo": app},
                                   pipeline=dataclasses.replace(PipelineSettings(), sender_processes=4))
    assert per_process_rate(settings, "demo", "fcm") == 25.0
    assert per_process_rate(settings, "demo", "apns") is None
    assert per_process_rate(settings, "nope", "apns") is None
    clock = Clock()
    p = Protection(settings, clock=clock)
    plan = p.before_send(batch(100, platform="fcm"))
    assert plan.send == 50 and plan.wait == pytest.approx(1.0)  # 25 in the bucket + 25 within the wait
    assert [v.reason for v in plan.held] == ["rate_limited"] * 50
    p.after_send([(batch(100, platform="fcm"), plan,
                   [*([Verdict(Action.RETRY, "QUOTA_EXCEEDED", 429, 60.0)] * 50), *plan.held])])
    bucket = p.of("demo", "fcm").bucket
    assert bucket is not None and bucket.rate == 12.5
    assert p.gauges() == [("demo", "fcm", 0, 0)]  # a 429 is no breaker failure


def test_unconfigured_platforms_pass_through() -> None:
    p, _ = protection()
    assert p.before_send(batch(3, app_id="unknown")).send == 3
    assert p.gauges() == []


def test_failures_while_the_breaker_is_open_wait_for_the_probe_without_an_attempt() -> None:
    p, clock = protection()
    verdicts = send(p, batch(20), DOWN)  # this batch opens it: its devices wait for the probe
    assert {(v.reason, v.provider_status, v.retry_after) for v in verdicts if v is not None} == {
        ("circuit_open", 503, 2.0)}
    clock.now += 2.0
    verdicts = send(p, batch(20), DOWN)  # a failed probe of 3: held again, until the next probe in 4 s
    assert {(v.reason, v.retry_after) for v in verdicts[:3] if v is not None} == {("circuit_open", 4.0)}
    assert {v.reason for v in verdicts[3:] if v is not None} == {"circuit_open"}


def test_failures_below_the_thresholds_are_ordinary_retries() -> None:
    p, _ = protection()
    assert send(p, batch(5), DOWN) == [DOWN] * 5


def test_describe_lists_each_key_for_debug_senders() -> None:
    from pushstream.agents.protection import describe

    p, _ = protection()
    send(p, batch(20), DOWN)
    assert describe(p) == {"demo/apns": {"breaker": "open", "guard_tripped": False, "rate": None}}
