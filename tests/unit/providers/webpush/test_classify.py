"""Web Push answer classification (RFC 8030 statuses), Retry-After parsing and aiohttp error mapping."""

from __future__ import annotations

import email.utils
import time

import aiohttp
import pytest

from pushstream.providers.outcome import (
    LOCAL_KINDS,
    TRANSPORT_CONNECT_FAILED,
    TRANSPORT_CONNECTION_LOST,
    TRANSPORT_ERROR,
    TRANSPORT_KINDS,
    TRANSPORT_TIMEOUT,
    Action,
    Rule,
    parse_retry_after,
    verdict_from_rule,
)
from pushstream.providers.webpush.classify import (
    WEBPUSH_ANSWERS,
    aiohttp_transport_kind,
    classify_webpush_answer,
    classify_webpush_no_answer,
)

# providers.md §4, written out: a wrong table row fails here.
DOCUMENTED: dict[int, Action] = {
    200: Action.DELIVERED,
    201: Action.DELIVERED,
    202: Action.DELIVERED,
    400: Action.FAILED,
    401: Action.REAUTH,
    403: Action.REAUTH,
    404: Action.INVALID_TOKEN,
    410: Action.INVALID_TOKEN,
    413: Action.FAILED,
    429: Action.RETRY,
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
}


@pytest.mark.parametrize("status", sorted(DOCUMENTED))
def test_documented_status(status: int) -> None:
    verdict = classify_webpush_answer(status)
    assert verdict.action is DOCUMENTED[status]
    assert verdict.provider_status == status
    assert verdict.reason == (None if verdict.action is Action.DELIVERED else f"http_{status}")


def test_dead_subscriptions_and_retries() -> None:
    assert classify_webpush_answer(404).action is Action.INVALID_TOKEN
    assert classify_webpush_answer(410).action is Action.INVALID_TOKEN
    assert classify_webpush_answer(413).action is Action.FAILED
    assert classify_webpush_answer(201).action is Action.DELIVERED
    verdict = classify_webpush_answer(429, "17")
    assert (verdict.action, verdict.retry_after) == (Action.RETRY, 17.0)


@pytest.mark.parametrize(("status", "action"), [(405, Action.FAILED), (418, Action.FAILED), (507, Action.RETRY)])
def test_unknown_statuses_go_by_http_class(status: int, action: Action) -> None:
    assert classify_webpush_answer(status).action is action


@pytest.mark.parametrize("kind", TRANSPORT_KINDS)
def test_transport_failures_retry(kind: str) -> None:
    assert classify_webpush_no_answer(kind).action is Action.RETRY


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_local_checks_fail(kind: str) -> None:
    verdict = classify_webpush_no_answer(kind, "why")
    assert (verdict.action, verdict.reason, verdict.detail) == (Action.FAILED, kind, "why")


def test_every_row_is_exercised() -> None:
    covered = {(s, "") for s in DOCUMENTED} | {(0, k) for k in (*TRANSPORT_KINDS, *LOCAL_KINDS)}
    assert set(WEBPUSH_ANSWERS) == covered


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (aiohttp.ConnectionTimeoutError(), TRANSPORT_CONNECT_FAILED),
        (aiohttp.ClientConnectorError(None, OSError(111, "refused")), TRANSPORT_CONNECT_FAILED),  # type: ignore[arg-type]
        (aiohttp.SocketTimeoutError(), TRANSPORT_TIMEOUT),
        (TimeoutError(), TRANSPORT_TIMEOUT),
        (aiohttp.ServerDisconnectedError(), TRANSPORT_CONNECTION_LOST),
        (aiohttp.ClientOSError(104, "reset"), TRANSPORT_CONNECTION_LOST),
        (aiohttp.ClientPayloadError("cut"), TRANSPORT_CONNECTION_LOST),
        (ConnectionResetError(), TRANSPORT_CONNECTION_LOST),
        (aiohttp.InvalidURL("x"), TRANSPORT_ERROR),
        (RuntimeError(), TRANSPORT_ERROR),
    ],
)
def test_aiohttp_errors_map_to_transport_kinds(exc: BaseException, kind: str) -> None:
    assert aiohttp_transport_kind(exc) == kind


# -- Retry-After (shared by all providers) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("-5", 0.0), ("1.5", 1.5), (30, 30.0), (None, None), ("", None),
     ("soon", None)],
)
def test_retry_after_delta_seconds(value: str | int | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 3600, usegmt=True), now=now) == 3600.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0  # in the past


def test_retry_after_http_date_against_the_clock() -> None:
    delay = parse_retry_after(email.utils.formatdate(time.time() + 60, usegmt=True))
    assert delay is not None and 55 <= delay <= 60


def test_a_rule_minimum_only_raises_the_delay() -> None:
    rule = Rule(Action.RETRY, min_retry_after=60.0)
    assert verdict_from_rule(rule, reason=None, provider_status=429).retry_after == 60.0
    assert verdict_from_rule(rule, reason=None, provider_status=429, retry_after=10.0).retry_after == 60.0
    assert verdict_from_rule(rule, reason=None, provider_status=429, retry_after=90.0).retry_after == 90.0
    # Not a retry: no delay, whatever the header said.
    failed = verdict_from_rule(Rule(Action.FAILED), reason=None, provider_status=400, retry_after=5.0)
    assert failed.retry_after is None
