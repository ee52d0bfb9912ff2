"""settle(): one sent batch and its verdicts → the exact records to write. Pure, no Kafka."""

from __future__ import annotations

import random

import pytest

from pushstream.models.internal import DeliveryBatch
from pushstream.providers.outcome import Action, Verdict
from pushstream.rules.settle import RetryPolicy, retry_batch_id, settle

POLICY = RetryPolicy(max_attempts=3, base=2.0, cap=60.0)
NOW = 1_000_000.0


def batch(n: int = 3, *, attempt: int = 1, expires_at: float | None = None, platform: str = "fcm",
          ttl: int | None = None) -> DeliveryBatch:
    items = [{"user_id": f"u-{i}", "device_id": f"d-{i}", "token": f"tok-{i}", "payload": {"x": i}}
             for i in range(n)]
    return DeliveryBatch(notification_id="n-1", app_id="demo", platform=platform, channel="marketing",
                         priority="normal", items=items, attempt=attempt, expires_at=expires_at,
                         batch_id="origin/0/0/fcm/0", ttl=ttl)


def test_one_status_per_device_in_item_order() -> None:
    out = settle(batch(), [Verdict(Action.DELIVERED, provider_status=200)] * 3, now=NOW, at="t", policy=POLICY)
    assert [s["device_id"] for s in out.statuses] == ["d-0", "d-1", "d-2"]
    assert {s["status"] for s in out.statuses} == {"delivered"}
    assert out.statuses[0]["provider_status"] == 200 and out.statuses[0]["attempt"] == 1
    assert out.retry is None and not out.dead_letters and not out.deactivations
    assert out.tally == {("fcm", "delivered", ""): 3}


def test_invalid_token_deactivates_with_the_token_fingerprint() -> None:
    out = settle(batch(1), [Verdict(Action.INVALID_TOKEN, "UNREGISTERED", 404)], now=NOW, at="t", policy=POLICY)
    (status,) = out.statuses
    (event,) = out.deactivations
    assert status["status"] == "invalid_token" and status["reason"] == "UNREGISTERED"
    assert event["kind"] == "deactivate" and event["fingerprint"] == status["token_fingerprint"]
    assert event["reason"] == "fcm:UNREGISTERED"


def test_retries_go_into_one_batch_with_a_deterministic_id() -> None:
    verdicts = [Verdict(Action.DELIVERED), Verdict(Action.RETRY, "UNAVAILABLE", 503, retry_after=30.0),
                Verdict(Action.RETRY, "UNAVAILABLE", 503)]
    out = settle(batch(), verdicts, now=NOW, at="t", policy=POLICY, rng=random.Random(1))
    assert [s["status"] for s in out.statuses] == ["delivered", "retrying", "retrying"]
    assert out.retry is not None
    assert [i["device_id"] for i in out.retry.items] == ["d-1", "d-2"]
    assert out.retry.attempt == 2 and out.retry.batch_id == "origin/0/0/fcm/0/a2"
    assert out.retry.not_before is not None and out.retry.not_before >= NOW + 30.0  # Retry-After wins
    assert retry_batch_id(batch()) == out.retry.batch_id


def test_exhausted_retries_are_dead_lettered_without_the_address() -> None:
    out = settle(batch(1, attempt=3), [Verdict(Action.RETRY, "UNAVAILABLE", 503)], now=NOW, at="t", policy=POLICY)
    assert out.statuses[0]["status"] == "dead_lettered"
    assert out.statuses[0]["reason"] == "retries_exhausted:UNAVAILABLE"
    (key, reason, _detail, record) = out.dead_letters[0]
    assert key == "u-0" and reason == "retries_exhausted:UNAVAILABLE"
    assert record["item"]["token"] == f"redacted:{record['token_fingerprint']}"
    assert record["item"]["payload"] == {"x": 0}
    assert out.retry is None


def test_a_retry_past_the_ttl_is_suppressed_as_expired() -> None:
    out = settle(batch(1, expires_at=NOW + 1), [Verdict(Action.RETRY, "x", 503, retry_after=10.0)], now=NOW, at="t",
                 policy=POLICY)
    assert (out.statuses[0]["status"], out.statuses[0]["reason"]) == ("suppressed", "expired")
    assert out.retry is None


@pytest.mark.parametrize("action", [Action.RETRY, Action.REAUTH])
def test_ttl_zero_is_never_retried_later(action: Action) -> None:
    """ttl 0 = now or never: an answer that would mean "try again later" ends it as failed/expired, final and
    not dead-lettered (a redrive would be later too), and no retry batch is written."""
    verdicts = [Verdict(Action.DELIVERED, provider_status=200), Verdict(action, "UNAVAILABLE", 503, retry_after=1.0)]
    out = settle(batch(2, ttl=0, expires_at=NOW - 30), verdicts, now=NOW, at="t", policy=POLICY)
    assert [(s["status"], s["reason"]) for s in out.statuses] == [("delivered", None), ("failed", "expired")]
    assert out.statuses[1]["provider_status"] == 503
    assert out.retry is None and out.dead_letters == []


def test_ttl_zero_first_attempt_outcomes_are_kept() -> None:
    verdicts = [Verdict(Action.INVALID_TOKEN, "UNREGISTERED", 404), Verdict(Action.FAILED, "BadThing", 400)]
    out = settle(batch(2, ttl=0, expires_at=NOW - 30), verdicts, now=NOW, at="t", policy=POLICY)
    assert [s["status"] for s in out.statuses] == ["invalid_token", "failed"]
    assert len(out.deactivations) == 1 and len(out.dead_letters) == 1


def test_no_client_for_the_platform_is_dead_lettered() -> None:
    out = settle(batch(2), [None, None], now=NOW, at="t", policy=POLICY)
    assert {(s["status"], s["reason"]) for s in out.statuses} == {("dead_lettered", "platform_not_configured")}
    assert len(out.dead_letters) == 2


@pytest.mark.parametrize("action,status", [(Action.FAILED, "failed"), (Action.FATAL_CONFIG, "dead_lettered")])
def test_permanent_failures_are_dead_lettered(action: Action, status: str) -> None:
    out = settle(batch(1), [Verdict(action, "BadThing", 400, detail="why")], now=NOW, at="t", policy=POLICY)
    assert out.statuses[0]["status"] == status
    assert out.dead_letters[0][2] == "why"


def test_a_verdict_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        settle(batch(2), [Verdict(Action.DELIVERED)], now=NOW, at="t", policy=POLICY)


def test_held_devices_wait_in_a_batch_of_the_same_attempt_with_their_own_id() -> None:
    from pushstream.rules.breaker import CIRCUIT_OPEN, RATE_LIMITED, held_verdict

    verdicts = [Verdict(Action.DELIVERED, provider_status=200), held_verdict(CIRCUIT_OPEN, 4.0),
                held_verdict(RATE_LIMITED, 1.0, provider_status=None), Verdict(Action.RETRY, "UNAVAILABLE", 503)]
    out = settle(batch(4, attempt=3), verdicts, now=NOW, at="t", policy=POLICY, rng=random.Random(1))
    assert [(s["status"], s["reason"]) for s in out.statuses] == [
        ("delivered", None), ("retrying", "circuit_open"), ("retrying", "rate_limited"),
        ("dead_lettered", "retries_exhausted:UNAVAILABLE")]  # attempt 3 of 3: only the sent device ran out
    assert out.held is not None and out.retry is None
    assert [i["device_id"] for i in out.held.items] == ["d-1", "d-2"]
    assert out.held.attempt == 3 and out.held.not_before == NOW + 4.0
    assert out.held.batch_id == "origin/0/0/fcm/0/h1"
    assert not out.deactivations and len(out.dead_letters) == 1


def test_a_held_answer_keeps_the_providers_status_and_deactivates_nothing() -> None:
    from pushstream.rules.breaker import CIRCUIT_OPEN, held_verdict

    out = settle(batch(2), [held_verdict(CIRCUIT_OPEN, 2.0, 400)] * 2, now=NOW, at="t", policy=POLICY)
    assert {(s["status"], s["reason"], s["provider_status"]) for s in out.statuses} == {
        ("retrying", "circuit_open", 400)}
    assert not out.deactivations and out.held is not None and out.retry is None


def test_a_held_device_that_cannot_wait_is_not_held() -> None:
    from pushstream.rules.breaker import CIRCUIT_OPEN, held_verdict

    out = settle(batch(1, expires_at=NOW + 1.0), [held_verdict(CIRCUIT_OPEN, 2.0)], now=NOW, at="t", policy=POLICY)
    assert (out.statuses[0]["status"], out.statuses[0]["reason"]) == ("suppressed", "expired")
    assert out.held is None
    out = settle(batch(1, ttl=0), [held_verdict(CIRCUIT_OPEN, 2.0)], now=NOW, at="t", policy=POLICY)
    assert (out.statuses[0]["status"], out.statuses[0]["reason"]) == ("failed", "expired")
    assert out.held is None
