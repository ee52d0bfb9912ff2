"""APNs answers → verdicts: one table, rows from Apple's "Handling notification responses" page.

APNs sends no Retry-After, so a RETRY verdict usually carries no delay and the agent's backoff decides;
one is honoured if something in between (a proxy, a fake) sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pushstream.providers.outcome import (
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

_DELIVERED = Rule(Action.DELIVERED)
_INVALID = Rule(Action.INVALID_TOKEN)
_FAILED = Rule(Action.FAILED)
_RETRY = Rule(Action.RETRY)
_RECONNECT = Rule(Action.RETRY, reconnect=True)
_REAUTH = Rule(Action.REAUTH)
_FATAL = Rule(Action.FATAL_CONFIG)

# (HTTP status, reason) → rule. Status 0 = no HTTP answer: a transport failure or a local check, by kind.
APNS_ANSWERS: Mapping[tuple[int, str], Rule] = MappingProxyType(
    {
        (200, ""): _DELIVERED,
        # The token is dead for this environment/topic (BadDeviceToken also = sandbox token sent to prod).
        (400, "BadDeviceToken"): _INVALID,
        (400, "DeviceTokenNotForTopic"): _INVALID,
        # Our request was malformed: a sender bug, retrying cannot help.
        (400, "BadCollapseId"): _FAILED,
        (400, "BadExpirationDate"): _FAILED,
        (400, "BadMessageId"): _FAILED,
        (400, "BadPriority"): _FAILED,
        (400, "BadTopic"): _FAILED,
        (400, "DuplicateHeaders"): _FAILED,
        (400, "InvalidPushType"): _FAILED,
        (400, "MissingDeviceToken"): _FAILED,
        (400, "MissingTopic"): _FAILED,
        (400, "PayloadEmpty"): _FAILED,
        (400, "TopicDisallowed"): _FAILED,
        (404, "BadPath"): _FAILED,
        (405, "MethodNotAllowed"): _FAILED,
        (413, "PayloadTooLarge"): _FAILED,
        # The connection went idle on Apple's side: reconnect and resend (handling unverified upstream).
        (400, "IdleTimeout"): _RECONNECT,
        # Provider JWT: expired → sign a new one; wrong key/team/environment → a configuration problem.
        (403, "ExpiredProviderToken"): _REAUTH,
        (403, "InvalidProviderToken"): _FATAL,
        (403, "MissingProviderToken"): _FATAL,
        (403, "BadCertificate"): _FATAL,
        (403, "BadCertificateEnvironment"): _FATAL,
        (403, "BadEnvironmentKeyIdInToken"): _FATAL,
        # A connection is bound to the key of its first push: open a new one for this key.
        (403, "UnrelatedKeyIdInToken"): _RECONNECT,
        (403, "Forbidden"): _FAILED,  # Apple: "Don't retry … Forbidden"
        (410, "Unregistered"): _INVALID,
        (410, "ExpiredToken"): _INVALID,
        (429, "TooManyRequests"): _RETRY,  # too many pushes to this one device token
        (429, "TooManyProviderTokenUpdates"): _RETRY,  # keep the current JWT; the client re-signs rarely
        (500, "InternalServerError"): _RETRY,
        (503, "ServiceUnavailable"): _RETRY,
        (503, "Shutdown"): _RECONNECT,  # the server is going away: new connection
        # No answer at all: the shared rows, except that a timeout or an unknown transport error also
        # retires the connection (a connection that stopped answering holds every later stream).
        # LOCAL_PAYLOAD_TOO_LARGE is over 4096 bytes, which APNs would answer with 413.
        **no_answer_rows(lambda kind: (0, kind), {TRANSPORT_TIMEOUT: _RECONNECT, TRANSPORT_ERROR: _RECONNECT}),
    }
)


def apns_rule(status: int, reason: str | None) -> Rule:
    """The table row for an answer; unknown reasons fall back to the HTTP class of the status."""
    return APNS_ANSWERS.get((status, reason or "")) or rule_by_http_class(status)


def classify_apns_answer(
    status: int, reason: str | None = None, timestamp_ms: int | None = None, retry_after: str | None = None
) -> Verdict:
    """Classify one APNs response (``:status``, the body's ``reason``/``timestamp``, any Retry-After)."""
    detail = f"unregistered_at_ms={timestamp_ms}" if timestamp_ms is not None else None
    return verdict_from_rule(apns_rule(status, reason), reason=reason or None, provider_status=status,
                             retry_after=parse_retry_after(retry_after), detail=detail)


def classify_apns_no_answer(kind: str, detail: str | None = None) -> Verdict:
    """Classify a send without an HTTP answer: outcome.TRANSPORT_KINDS or outcome.LOCAL_KINDS."""
    rule = APNS_ANSWERS.get((0, kind), APNS_ANSWERS[(0, TRANSPORT_ERROR)])
    return verdict_from_rule(rule, reason=kind, provider_status=None, detail=detail)
