"""APNs answer classification: every row of providers.md §4 for APNs, asserted independently of the table."""

from __future__ import annotations

import pytest

from pushstream.providers.apns.classify import (
    APNS_ANSWERS,
    apns_rule,
    classify_apns_answer,
    classify_apns_no_answer,
)
from pushstream.providers.outcome import LOCAL_KINDS, TRANSPORT_KINDS, Action

DELIVERED, INVALID, FAILED, RETRY, REAUTH, FATAL = (
    Action.DELIVERED, Action.INVALID_TOKEN, Action.FAILED, Action.RETRY, Action.REAUTH, Action.FATAL_CONFIG,
)

# Written out from Apple's error table and providers.md §4, not derived from APNS_ANSWERS: a wrong row fails.
DOCUMENTED: dict[tuple[int, str], Action] = {
    (200, ""): DELIVERED,
    (400, "BadDeviceToken"): INVALID,
    (400, "DeviceTokenNotForTopic"): INVALID,
    (400, "BadCollapseId"): FAILED,
    (400, "BadExpirationDate"): FAILED,
    (400, "BadMessageId"): FAILED,
    (400, "BadPriority"): FAILED,
    (400, "BadTopic"): FAILED,
    (400, "DuplicateHeaders"): FAILED,
    (400, "InvalidPushType"): FAILED,
    (400, "MissingDeviceToken"): FAILED,
    (400, "MissingTopic"): FAILED,
    (400, "PayloadEmpty"): FAILED,
    (400, "TopicDisallowed"): FAILED,
    (400, "IdleTimeout"): RETRY,
    (403, "ExpiredProviderToken"): REAUTH,
    (403, "InvalidProviderToken"): FATAL,
    (403, "MissingProviderToken"): FATAL,
    (403, "BadCertificate"): FATAL,
    (403, "BadCertificateEnvironment"): FATAL,
    (403, "BadEnvironmentKeyIdInToken"): FATAL,
    (403, "UnrelatedKeyIdInToken"): RETRY,
    (403, "Forbidden"): FAILED,
    (404, "BadPath"): FAILED,
    (405, "MethodNotAllowed"): FAILED,
    (410, "Unregistered"): INVALID,
    (410, "ExpiredToken"): INVALID,
    (413, "PayloadTooLarge"): FAILED,
    (429, "TooManyRequests"): RETRY,
    (429, "TooManyProviderTokenUpdates"): RETRY,
    (500, "InternalServerError"): RETRY,
    (503, "ServiceUnavailable"): RETRY,
    (503, "Shutdown"): RETRY,
}
# Answers after which the connection itself must be replaced.
RECONNECT = {(400, "IdleTimeout"), (403, "UnrelatedKeyIdInToken"), (503, "Shutdown")}


def test_every_documented_answer_has_a_row_and_nothing_else_does() -> None:
    http_rows = {key for key in APNS_ANSWERS if key[0] != 0}
    assert http_rows == set(DOCUMENTED)


@pytest.mark.parametrize(("status", "reason"), sorted(DOCUMENTED))
def test_documented_answer(status: int, reason: str) -> None:
    verdict = classify_apns_answer(status, reason or None)
    assert verdict.action is DOCUMENTED[(status, reason)]
    assert verdict.provider_status == status
    assert verdict.reason == (reason or None)
    assert verdict.retry_after is None  # APNs sends no Retry-After
    assert apns_rule(status, reason).reconnect is ((status, reason) in RECONNECT)


def test_the_answers_that_decide_a_token_s_fate() -> None:
    assert classify_apns_answer(410, "Unregistered").action is Action.INVALID_TOKEN
    assert classify_apns_answer(410, "ExpiredToken").action is Action.INVALID_TOKEN
    assert classify_apns_answer(400, "BadDeviceToken").action is Action.INVALID_TOKEN
    # Apple: "Don't retry … Forbidden … PayloadTooLarge"; retry TooManyRequests with a delay.
    assert classify_apns_answer(403, "Forbidden").action is Action.FAILED
    assert classify_apns_answer(413, "PayloadTooLarge").action is Action.FAILED
    assert classify_apns_answer(429, "TooManyRequests").action is Action.RETRY
    assert classify_apns_answer(200).action is Action.DELIVERED


def test_a_retry_after_is_honoured_if_one_arrives() -> None:
    assert classify_apns_answer(429, "TooManyRequests", retry_after="12").retry_after == 12.0
    assert classify_apns_answer(410, "Unregistered", retry_after="12").retry_after is None


def test_unregistered_keeps_the_timestamp() -> None:
    verdict = classify_apns_answer(410, "Unregistered", 1795312941202)
    assert verdict.action is Action.INVALID_TOKEN
    assert verdict.detail == "unregistered_at_ms=1795312941202"


@pytest.mark.parametrize(
    ("status", "reason", "action"),
    [
        (400, "SomethingNew", Action.FAILED),
        (403, None, Action.FAILED),
        (410, "NotYetDocumented", Action.FAILED),
        (429, "Unheard", Action.RETRY),
        (500, "Whatever", Action.RETRY),
        (502, None, Action.RETRY),
        (503, "Rebooting", Action.RETRY),
    ],
)
def test_unknown_answers_go_by_http_class(status: int, reason: str | None, action: Action) -> None:
    verdict = classify_apns_answer(status, reason)
    assert verdict.action is action
    assert verdict.reason == reason


@pytest.mark.parametrize("kind", TRANSPORT_KINDS)
def test_transport_failures_retry(kind: str) -> None:
    verdict = classify_apns_no_answer(kind, "detail")
    assert verdict.action is Action.RETRY
    assert (verdict.reason, verdict.provider_status, verdict.detail) == (kind, None, "detail")


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_local_checks_fail_without_retry(kind: str) -> None:
    assert classify_apns_no_answer(kind).action is Action.FAILED


def test_unknown_transport_kind_is_a_retry() -> None:
    assert classify_apns_no_answer("gremlins").action is Action.RETRY


def test_every_row_is_exercised() -> None:
    covered = set(DOCUMENTED) | {(0, k) for k in (*TRANSPORT_KINDS, *LOCAL_KINDS)}
    assert set(APNS_ANSWERS) == covered
