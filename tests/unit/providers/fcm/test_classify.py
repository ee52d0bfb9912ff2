"""FCM HTTP v1 answer classification: the error bodies of providers.md §2.3 and every table row."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import orjson
import pytest

from pushstream.providers.fcm.classify import (
    FCM_ANSWERS,
    QUOTA_MIN_DELAY_SECONDS,
    classify_fcm_answer,
    classify_fcm_no_answer,
    classify_fcm_oauth_failure,
    fcm_answer_key,
    httpx_transport_kind,
)
from pushstream.providers.outcome import (
    LOCAL_KINDS,
    TRANSPORT_CONNECT_FAILED,
    TRANSPORT_CONNECTION_LOST,
    TRANSPORT_ERROR,
    TRANSPORT_KINDS,
    TRANSPORT_TIMEOUT,
    Action,
)

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def error_body(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return orjson.dumps({"error": error})


def fcm_error(error_code: str) -> dict[str, str]:
    return {"@type": FCM_ERROR, "errorCode": error_code}


def bad_request(field: str) -> dict[str, Any]:
    return {"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": "bad"}]}


# Bodies as FCM sends them (providers.md §2.3 and the firebase error-code page).
UNREGISTERED = error_body(404, "NOT_FOUND", "Requested entity was not found.", fcm_error("UNREGISTERED"))
INVALID_TOKEN = error_body(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                           fcm_error("INVALID_ARGUMENT"))
DATA_NOT_STRING = error_body(400, "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
                             fcm_error("INVALID_ARGUMENT"), bad_request("message.data[0].value"))
TOO_BIG = error_body(400, "INVALID_ARGUMENT", "Message is too big", fcm_error("INVALID_ARGUMENT"))
TOKEN_FIELD = error_body(400, "INVALID_ARGUMENT", "Invalid registration", fcm_error("INVALID_ARGUMENT"),
                         bad_request("message.token"))
OAUTH = error_body(401, "UNAUTHENTICATED", "Request is missing required authentication credential.")
THIRD_PARTY = error_body(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service",
                         fcm_error("THIRD_PARTY_AUTH_ERROR"))
SENDER_MISMATCH = error_body(403, "PERMISSION_DENIED", "SenderId mismatch", fcm_error("SENDER_ID_MISMATCH"))
API_DISABLED = error_body(403, "PERMISSION_DENIED", "Firebase Cloud Messaging API has not been used")
QUOTA = error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", fcm_error("QUOTA_EXCEEDED"))
QUOTA_NO_DETAIL = error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded.")
UNAVAILABLE = error_body(503, "UNAVAILABLE", "The service is currently unavailable.", fcm_error("UNAVAILABLE"))
INTERNAL = error_body(500, "INTERNAL", "Internal error encountered.", fcm_error("INTERNAL"))
UNSPECIFIED_500 = error_body(500, "INTERNAL", "?", fcm_error("UNSPECIFIED_ERROR"))
UNSPECIFIED_400 = error_body(400, "INVALID_ARGUMENT", "?", fcm_error("UNSPECIFIED_ERROR"))

DOCUMENTED: list[tuple[str, int, bytes, Action]] = [
    ("unregistered", 404, UNREGISTERED, Action.INVALID_TOKEN),
    ("invalid registration token", 400, INVALID_TOKEN, Action.INVALID_TOKEN),
    ("token field violation", 400, TOKEN_FIELD, Action.INVALID_TOKEN),
    ("data value not a string", 400, DATA_NOT_STRING, Action.FAILED),
    ("message too big", 400, TOO_BIG, Action.FAILED),  # never delete a token for a payload problem
    ("expired OAuth token", 401, OAUTH, Action.REAUTH),
    ("third-party auth", 401, THIRD_PARTY, Action.FATAL_CONFIG),
    ("sender id mismatch", 403, SENDER_MISMATCH, Action.INVALID_TOKEN),
    ("API disabled", 403, API_DISABLED, Action.FATAL_CONFIG),
    ("quota", 429, QUOTA, Action.RETRY),
    ("quota without FcmError", 429, QUOTA_NO_DETAIL, Action.RETRY),
    ("unavailable", 503, UNAVAILABLE, Action.RETRY),
    ("internal", 500, INTERNAL, Action.RETRY),
    ("unspecified 5xx", 500, UNSPECIFIED_500, Action.RETRY),
    ("unspecified 4xx", 400, UNSPECIFIED_400, Action.FAILED),
    ("success", 200, b'{"name": "projects/p/messages/0:1%fake"}', Action.DELIVERED),
    ("unknown 4xx, no body", 418, b"", Action.FAILED),
    ("unknown 5xx, HTML body", 502, b"<html>bad gateway</html>", Action.RETRY),
]


@pytest.mark.parametrize(("status", "body", "action"), [d[1:] for d in DOCUMENTED], ids=[d[0] for d in DOCUMENTED])
def test_documented_answer(status: int, body: bytes, action: Action) -> None:
    verdict = classify_fcm_answer(status, body)
    assert verdict.action is action
    assert verdict.provider_status == status


def test_reason_is_the_fcm_error_code_and_detail_the_message() -> None:
    verdict = classify_fcm_answer(404, UNREGISTERED)
    assert (verdict.reason, verdict.detail) == ("UNREGISTERED", "Requested entity was not found.")
    assert classify_fcm_answer(400, INVALID_TOKEN).reason == "INVALID_ARGUMENT"
    assert classify_fcm_answer(401, OAUTH).reason == "UNAUTHENTICATED"
    assert classify_fcm_answer(503, b"").reason == "http_503"


def test_success_keeps_the_message_name() -> None:
    verdict = classify_fcm_answer(200, b'{"name": "projects/p/messages/0:1%fake"}')
    assert (verdict.reason, verdict.detail) == (None, "projects/p/messages/0:1%fake")


def test_branch_on_error_code_not_on_status() -> None:
    # An FcmError with an HTTP status that does not match it: the errorCode decides.
    assert classify_fcm_answer(400, UNREGISTERED).action is Action.INVALID_TOKEN
    assert fcm_answer_key(500, UNREGISTERED) == ("FcmError", "UNREGISTERED")


def test_quota_waits_at_least_a_minute_or_longer_when_told() -> None:
    assert classify_fcm_answer(429, QUOTA).retry_after == QUOTA_MIN_DELAY_SECONDS
    assert classify_fcm_answer(429, QUOTA, "5").retry_after == QUOTA_MIN_DELAY_SECONDS
    assert classify_fcm_answer(429, QUOTA, "120").retry_after == 120.0


def test_unavailable_honours_retry_after_seconds_and_dates() -> None:
    assert classify_fcm_answer(503, UNAVAILABLE, "30").retry_after == 30.0
    in_90s = email.utils.formatdate(time.time() + 90, usegmt=True)
    delay = classify_fcm_answer(503, UNAVAILABLE, in_90s).retry_after
    assert delay is not None and 85 <= delay <= 90
    assert classify_fcm_answer(503, UNAVAILABLE).retry_after is None


def test_body_may_be_a_parsed_mapping() -> None:
    assert classify_fcm_answer(404, orjson.loads(UNREGISTERED)).action is Action.INVALID_TOKEN


@pytest.mark.parametrize("kind", TRANSPORT_KINDS)
def test_transport_failures_retry(kind: str) -> None:
    verdict = classify_fcm_no_answer(kind)
    assert (verdict.action, verdict.reason, verdict.provider_status) == (Action.RETRY, kind, None)


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_local_checks_fail(kind: str) -> None:
    assert classify_fcm_no_answer(kind).action is Action.FAILED


def test_oauth_failures() -> None:
    assert classify_fcm_oauth_failure(reachable=True).action is Action.FATAL_CONFIG
    assert classify_fcm_oauth_failure(reachable=False).action is Action.RETRY


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectTimeout("t"), TRANSPORT_CONNECT_FAILED),
        (httpx.ConnectError("refused"), TRANSPORT_CONNECT_FAILED),
        (httpx.ReadTimeout("t"), TRANSPORT_TIMEOUT),
        (httpx.PoolTimeout("t"), TRANSPORT_TIMEOUT),
        (httpx.RemoteProtocolError("GOAWAY"), TRANSPORT_CONNECTION_LOST),
        (httpx.ReadError("reset"), TRANSPORT_CONNECTION_LOST),
        (httpx.UnsupportedProtocol("ftp"), TRANSPORT_ERROR),
        (RuntimeError("?"), TRANSPORT_ERROR),
    ],
)
def test_httpx_errors_map_to_transport_kinds(exc: BaseException, kind: str) -> None:
    assert httpx_transport_kind(exc) == kind


def test_every_row_is_exercised() -> None:
    keys = {fcm_answer_key(status, body) for _, status, body, _ in DOCUMENTED}
    keys |= {("transport", k) for k in TRANSPORT_KINDS}
    keys |= {("local", k) for k in LOCAL_KINDS}
    keys |= {("oauth", "rejected"), ("oauth", "unreachable")}
    # UNSPECIFIED_ERROR and unknown statuses have no row on purpose (decided by HTTP class).
    keys -= {("FcmError", "UNSPECIFIED_ERROR"), ("status", "http_418"), ("status", "http_502")}
    assert keys == set(FCM_ANSWERS)
