"""Web Push answers → verdicts: one table keyed by HTTP status (RFC 8030 gives no reason codes).

Push services disagree on bodies (autopush sends JSON, others text), so only the status and Retry-After
are trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import aiohttp

from pushstream.providers.outcome import (
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
from pushstream.providers.webpush import http

# (HTTP status, kind) → rule; kind is "" for HTTP answers. Status 0 = no HTTP answer (transport or local).
WEBPUSH_ANSWERS: Mapping[tuple[int, str], Rule] = MappingProxyType(
    {
        (200, ""): Rule(Action.DELIVERED),  # not in RFC 8030, but some services answer 200
        (201, ""): Rule(Action.DELIVERED),
        (202, ""): Rule(Action.DELIVERED),  # with Prefer: respond-async
        (400, ""): Rule(Action.FAILED),  # malformed headers or encoding: a sender bug
        # VAPID rejected: re-sign (exp lapsed / wrong aud) and retry once; the client escalates to
        # FATAL_CONFIG when a fresh signature is rejected too (wrong key for the subscription).
        (401, ""): Rule(Action.REAUTH),
        (403, ""): Rule(Action.REAUTH),
        (404, ""): Rule(Action.INVALID_TOKEN),  # RFC 8030 §7.3: expired subscription
        (410, ""): Rule(Action.INVALID_TOKEN),  # autopush & co: subscription gone
        (413, ""): Rule(Action.FAILED),  # encrypted body over 4096 bytes
        (429, ""): Rule(Action.RETRY),
        (500, ""): Rule(Action.RETRY),
        (502, ""): Rule(Action.RETRY),
        (503, ""): Rule(Action.RETRY),
        (504, ""): Rule(Action.RETRY),
        # No answer: the shared rows. LOCAL_PAYLOAD_TOO_LARGE is plaintext over 3993 bytes (RFC 8291 §4),
        # LOCAL_BAD_ADDRESS a subscription without endpoint or usable keys.
        **no_answer_rows(lambda kind: (0, kind)),
    }
)


def classify_webpush_answer(
    status: int, retry_after: str | None = None, detail: str | None = None
) -> Verdict:
    """Classify one push-service response; ``retry_after`` is the raw Retry-After header."""
    rule = WEBPUSH_ANSWERS.get((status, "")) or rule_by_http_class(status)
    reason = None if rule.action is Action.DELIVERED else f"http_{status}"
    return verdict_from_rule(rule, reason=reason, provider_status=status,
                             retry_after=parse_retry_after(retry_after), detail=detail)


def classify_webpush_no_answer(kind: str, detail: str | None = None) -> Verdict:
    """Classify a send without an HTTP answer: outcome.TRANSPORT_KINDS or outcome.LOCAL_KINDS."""
    rule = WEBPUSH_ANSWERS.get((0, kind), WEBPUSH_ANSWERS[(0, TRANSPORT_ERROR)])
    return verdict_from_rule(rule, reason=kind, provider_status=None, detail=detail)


# The sender's own HTTP/1.1 client (http.py) → transport kind. First match wins.
HTTP_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (http.ConnectError, TRANSPORT_CONNECT_FAILED),  # DNS, refused, TLS handshake
    (http.ConnectionLost, TRANSPORT_CONNECTION_LOST),  # closed or reset before the whole answer
    (http.ProtocolError, TRANSPORT_ERROR),  # an answer that is not HTTP/1.1
    (TimeoutError, TRANSPORT_TIMEOUT),
    (OSError, TRANSPORT_CONNECTION_LOST),  # a write on a broken socket
)


def http_transport_kind(exc: BaseException) -> str:
    """The transport kind (outcome.TRANSPORT_KINDS) of an http.py / socket exception."""
    for exc_type, kind in HTTP_TRANSPORT_ERRORS:
        if isinstance(exc, exc_type):
            return kind
    return TRANSPORT_ERROR


# aiohttp exception → transport kind (for aiohttp-based sends; the sender uses http.py). First match wins.
AIOHTTP_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (aiohttp.ConnectionTimeoutError, TRANSPORT_CONNECT_FAILED),
    (aiohttp.ClientConnectorError, TRANSPORT_CONNECT_FAILED),  # DNS, refused, TLS handshake
    (TimeoutError, TRANSPORT_TIMEOUT),  # also aiohttp's socket/total timeouts
    (aiohttp.ServerDisconnectedError, TRANSPORT_CONNECTION_LOST),
    (aiohttp.ClientOSError, TRANSPORT_CONNECTION_LOST),  # resets
    (aiohttp.ClientPayloadError, TRANSPORT_CONNECTION_LOST),  # answer cut short
    (aiohttp.ClientError, TRANSPORT_ERROR),
    (OSError, TRANSPORT_CONNECTION_LOST),
)


def aiohttp_transport_kind(exc: BaseException) -> str:
    """The transport kind (outcome.TRANSPORT_KINDS) of an aiohttp / socket exception."""
    for exc_type, kind in AIOHTTP_TRANSPORT_ERRORS:
        if isinstance(exc, exc_type):
            return kind
    return TRANSPORT_ERROR
