"""The APNs send decisions without a connection (pushstream.providers.apns.attempt)."""

from __future__ import annotations

import pytest

from pushstream.providers.apns.attempt import next_step, request_headers, token_renewal
from pushstream.providers.apns.classify import apns_rule, classify_apns_answer


def test_request_headers_put_the_unique_values_in_never_indexed_literals_in_the_middle() -> None:
    head = [(b":method", b"POST", False)]
    common = [(b"apns-topic", b"com.example.app", False)]
    tail = [(b"apns-push-type", b"alert", False)]

    headers = request_headers(head, b"ab12", common, b"id-1", tail)

    assert headers == [(b":method", b"POST", False), (b":path", b"/3/device/ab12", True),
                       (b"apns-topic", b"com.example.app", False), (b"apns-id", b"id-1", True),
                       (b"apns-push-type", b"alert", False)]
    assert head == [(b":method", b"POST", False)]  # the shared lists are not changed


@pytest.mark.parametrize(("status", "reason", "reconnected", "reauthed", "step"), [
    (200, None, False, False, "done"),
    (410, "Unregistered", False, False, "done"),
    (403, "ExpiredProviderToken", False, False, "renew_token"),
    (403, "ExpiredProviderToken", False, True, "done"),  # renewed once already: the verdict stands
    (403, "InvalidProviderToken", False, False, "done"),  # wrong key: FATAL_CONFIG, no renewal
    (500, "InternalServerError", False, False, "done"),  # the agent's backoff retries it
    (503, "Shutdown", False, False, "reconnect"),
    (503, "Shutdown", True, False, "done"),  # reconnected once already
    (403, "UnrelatedKeyIdInToken", False, True, "reconnect"),
    (400, "IdleTimeout", False, False, "reconnect"),
    (429, "TooManyRequests", False, False, "done"),
])
def test_next_step_after_an_answer(status: int, reason: str | None, reconnected: bool, reauthed: bool,
                                   step: str) -> None:
    verdict = classify_apns_answer(status, reason)

    assert next_step(verdict, apns_rule(status, reason).reconnect, reconnected, reauthed) == step


def test_token_renewal_signs_once_per_interval_and_follows_someone_elses_renewal() -> None:
    assert token_renewal(issued_at=1000, rejected_issued_at=1000, now=1000 + 1200, min_interval=1200) == "sign"
    assert token_renewal(issued_at=1000, rejected_issued_at=1000, now=1000 + 1199, min_interval=1200) == "too_soon"
    assert token_renewal(issued_at=2000, rejected_issued_at=1000, now=2001, min_interval=1200) == "renewed_elsewhere"
