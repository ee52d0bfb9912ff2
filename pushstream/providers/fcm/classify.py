"""FCM HTTP v1 answers → verdicts: one table, keyed by what the answer says.

FCM's own code is ``details[].errorCode`` of the ``google.firebase.fcm.v1.FcmError`` detail; branch on it,
not on the canonical ``status``. Answers without an FcmError (OAuth, IAM) are keyed by the canonical status.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import httpx
import orjson

from pushstream.providers.outcome import (
    LOCAL_KINDS,
    TRANSPORT_CONNECT_FAILED,
    TRANSPORT_CONNECTION_LOST,
    TRANSPORT_ERROR,
    TRANSPORT_TIMEOUT,
    Action,
    Rule,
    Verdict,
    no_answer_rows,
    parse_retry_after,
    rule_by_http_class,
    verdict_from_rule,
)

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
# FCM: "exponential backoff with a minimum initial delay of 1 minute" on QUOTA_EXCEEDED.
QUOTA_MIN_DELAY_SECONDS = 60.0
_DETAIL_MAX = 200

# Key kinds: ("http", "2xx") success; ("FcmError", errorCode); ("status", google.rpc status) when the answer
# has no FcmError; ("local", kind) / ("transport", kind) for no HTTP answer; ("oauth", …) for the
# service-account token fetch.
# INVALID_ARGUMENT is split: FCM uses it both for a bad token and for a bad message, and only the former
# may delete the token ("only if the payload is completely valid").
FCM_ANSWERS: Mapping[tuple[str, str], Rule] = MappingProxyType(
    {
        ("http", "2xx"): Rule(Action.DELIVERED),
        ("FcmError", "UNREGISTERED"): Rule(Action.INVALID_TOKEN),
        ("FcmError", "INVALID_ARGUMENT/token"): Rule(Action.INVALID_TOKEN),
        ("FcmError", "INVALID_ARGUMENT/payload"): Rule(Action.FAILED),
        ("FcmError", "SENDER_ID_MISMATCH"): Rule(Action.INVALID_TOKEN),  # token of another project
        ("FcmError", "QUOTA_EXCEEDED"): Rule(Action.RETRY, min_retry_after=QUOTA_MIN_DELAY_SECONDS),
        ("FcmError", "UNAVAILABLE"): Rule(Action.RETRY),
        ("FcmError", "INTERNAL"): Rule(Action.RETRY),
        # The APNs key/cert or web push credentials in the Firebase project: not our OAuth token.
        ("FcmError", "THIRD_PARTY_AUTH_ERROR"): Rule(Action.FATAL_CONFIG),
        # UNSPECIFIED_ERROR and unknown codes have no row: decided by HTTP class (5xx retry, 4xx fail).
        ("status", "UNAUTHENTICATED"): Rule(Action.REAUTH),  # our OAuth token: refresh once, then fatal
        ("status", "PERMISSION_DENIED"): Rule(Action.FATAL_CONFIG),  # API disabled / SA lacks the role
        ("status", "RESOURCE_EXHAUSTED"): Rule(Action.RETRY, min_retry_after=QUOTA_MIN_DELAY_SECONDS),
        # No answer: the shared rows (LOCAL_PAYLOAD_TOO_LARGE is unused, FCM measures the size itself).
        **no_answer_rows(lambda kind: ("local" if kind in LOCAL_KINDS else "transport", kind)),
        # Fetching the OAuth token: the token endpoint refused our key (fatal) or could not be reached.
        ("oauth", "rejected"): Rule(Action.FATAL_CONFIG),
        ("oauth", "unreachable"): Rule(Action.RETRY),
    }
)


def _error_object(body: bytes | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if body is None:
        return {}
    if isinstance(body, bytes | bytearray | str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else {}


def _details(error: Mapping[str, Any], type_url: str) -> list[Mapping[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, Mapping) and d.get("@type") == type_url]


def _invalid_argument_target(error: Mapping[str, Any]) -> str:
    """``token`` when FCM rejected the registration token itself, else ``payload`` (the safe default)."""
    fields = [
        str(v.get("field", ""))
        for d in _details(error, BAD_REQUEST_TYPE)
        for v in d.get("fieldViolations") or []
        if isinstance(v, Mapping)
    ]
    if fields:
        return "token" if all(f == "message.token" for f in fields) else "payload"
    return "token" if "registration token" in str(error.get("message", "")).lower() else "payload"


def fcm_answer_key(status: int, body: bytes | Mapping[str, Any] | None) -> tuple[str, str]:
    """The table key for an HTTP answer (status and the JSON error body)."""
    if 200 <= status < 300:
        return ("http", "2xx")
    error = _error_object(body)
    fcm_errors = _details(error, FCM_ERROR_TYPE)
    if fcm_errors:
        code = str(fcm_errors[0].get("errorCode") or "UNSPECIFIED_ERROR")
        if code == "INVALID_ARGUMENT":
            code = f"INVALID_ARGUMENT/{_invalid_argument_target(error)}"
        return ("FcmError", code)
    return ("status", str(error.get("status") or f"http_{status}"))


def classify_fcm_answer(
    status: int, body: bytes | Mapping[str, Any] | None = None, retry_after: str | None = None
) -> Verdict:
    """Classify one ``messages:send`` response; ``retry_after`` is the raw Retry-After header."""
    key = fcm_answer_key(status, body)
    rule = FCM_ANSWERS.get(key) or rule_by_http_class(status)
    if key[0] == "http":
        reason = None
        name = _name(body)
        detail = name
    else:
        reason = key[1].split("/", 1)[0]
        error = _error_object(body)
        detail = str(error.get("message", ""))[:_DETAIL_MAX] or None
    return verdict_from_rule(rule, reason=reason, provider_status=status,
                             retry_after=parse_retry_after(retry_after), detail=detail)


def _name(body: bytes | Mapping[str, Any] | None) -> str | None:
    if isinstance(body, bytes | bytearray | str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    name = body.get("name") if isinstance(body, Mapping) else None
    return name if isinstance(name, str) else None


def classify_fcm_no_answer(kind: str, detail: str | None = None) -> Verdict:
    """Classify a send without an HTTP answer: outcome.TRANSPORT_KINDS or outcome.LOCAL_KINDS."""
    rule = (FCM_ANSWERS.get(("local", kind)) or FCM_ANSWERS.get(("transport", kind))
            or FCM_ANSWERS[("transport", TRANSPORT_ERROR)])
    return verdict_from_rule(rule, reason=kind, provider_status=None, detail=detail)


def classify_fcm_oauth_failure(reachable: bool, detail: str | None = None) -> Verdict:
    """Classify a failed OAuth token fetch: refused by the token endpoint, or the endpoint unreachable."""
    kind = "rejected" if reachable else "unreachable"
    return verdict_from_rule(FCM_ANSWERS[("oauth", kind)], reason=f"oauth_{kind}", provider_status=None,
                             detail=detail)


# httpx exception → transport kind; first match wins, so the specific types come first.
HTTPX_TRANSPORT_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, TRANSPORT_CONNECT_FAILED),
    (httpx.ConnectError, TRANSPORT_CONNECT_FAILED),
    (httpx.TimeoutException, TRANSPORT_TIMEOUT),  # read/write/pool timeouts
    (httpx.RemoteProtocolError, TRANSPORT_CONNECTION_LOST),  # GOAWAY, server closed mid-stream
    (httpx.NetworkError, TRANSPORT_CONNECTION_LOST),  # read/write errors, resets
    (httpx.HTTPError, TRANSPORT_ERROR),
)


def httpx_transport_kind(exc: BaseException) -> str:
    """The transport kind (outcome.TRANSPORT_KINDS) of an httpx exception."""
    for exc_type, kind in HTTPX_TRANSPORT_ERRORS:
        if isinstance(exc, exc_type):
            return kind
    return TRANSPORT_ERROR
