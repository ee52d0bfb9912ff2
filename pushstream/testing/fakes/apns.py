"""Fake APNs provider API: HTTP/2 over TLS, token (JWT) auth, Apple's validation rules and error bodies.

Frame shapes follow what aioapns needs (providers.md §1.4): every answer echoes ``apns-id``; a 200 is
HEADERS with END_STREAM and no DATA; an error is HEADERS then one non-empty DATA frame ``{"reason": ...}``
(+ ``timestamp`` in ms for 410); errors are never signalled with RST_STREAM.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from pushstream.testing.fakes.base import (
    FakeAnswer,
    FakeProvider,
    VerdictCache,
    json_answer,
    parse_json,
    retry_after_header,
)
from pushstream.testing.fakes.credentials import DevSetup, load_private_key
from pushstream.testing.fakes.httpserver import Answer, IncomingRequest

# Apple publishes no number; it allows one stream until a request with a valid JWT arrives.
RAISED_STREAM_LIMIT = 1000
PROVIDER_TOKEN_MAX_AGE = 3600  # seconds; older iat -> ExpiredProviderToken

PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "complication",
        "controls",
        "fileprovider",
        "liveactivity",
        "location",
        "mdm",
        "pushtotalk",
        "voip",
        "widgets",
    }
)
TOPIC_SUFFIXES = (
    ".voip",
    ".complication",
    ".pushkit.fileprovider",
    ".location-query",
    ".voip-ptt",
    ".push-type.liveactivity",
    ".push-type.widgets",
    ".push-type.controls",
)
PRIORITIES = frozenset({"1", "5", "10"})
MAX_PAYLOAD = 4096
MAX_VOIP_PAYLOAD = 5120
MAX_COLLAPSE_ID = 64

# Reasons used when a script gives only a status.
DEFAULT_REASONS = {
    400: "BadDeviceToken",
    403: "Forbidden",
    404: "BadPath",
    405: "MethodNotAllowed",
    410: "Unregistered",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}

_DEVICE_PATH = "/3/device/"
_HEX_TOKEN = re.compile(r"(?:[0-9a-fA-F]{2})+")  # Apple: don't assume a length
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_SINGLE_HEADERS = frozenset(
    {
        "authorization",
        "apns-id",
        "apns-topic",
        "apns-push-type",
        "apns-priority",
        "apns-expiration",
        "apns-collapse-id",
    }
)


@dataclass(frozen=True, slots=True)
class _ProviderToken:
    invalid_reason: str | None  # None: signature, kid and iss are fine
    issued_at: int


class FakeAPNs(FakeProvider):
    """Fake APNs server. Point aioapns at ``localhost:<port>`` trusting ``setup.ca_cert_file``."""

    name = "apns"
    tls_alpn = ("h2",)
    serves_http1 = False
    advertised_max_streams = 1  # until a request with a valid JWT arrives

    def configure(self, setup: DevSetup) -> None:
        self.key_id = setup.apns_key_id
        self.team_id = setup.apns_team_id
        self.topic = setup.apns_topic  # assign to accept another bundle id
        signing_key = load_private_key(setup.apns_key_file)
        assert isinstance(signing_key, ec.EllipticCurvePrivateKey)
        self._public_key = signing_key.public_key()
        self._tokens: VerdictCache[_ProviderToken] = VerdictCache()

    def handle(self, request: IncomingRequest) -> FakeAnswer:
        """Validate like APNs, then apply faults, else accept."""
        apns_id = request.header("apns-id") or str(uuid.uuid4())
        device_token = request.path[len(_DEVICE_PATH) :] if request.path.startswith(_DEVICE_PATH) else None
        problem = self._check_request(request, device_token)
        if problem is None:
            fault = self.fault_for(device_token)
            if fault is not None:
                status, reason = (
                    fault.status,
                    fault.reason or DEFAULT_REASONS.get(fault.status, "InternalServerError"),
                )
                timestamp = fault.unregistered_at_ms
                if status == 410 and timestamp is None:
                    timestamp = int(time.time() * 1000)
                answer = _error(status, reason, apns_id, timestamp, retry_after_header(fault))
                return self._verdict(request, answer, reason, device_token)
            headers = [("apns-id", apns_id)]
            if not self.benchmark:  # sent by the development environment only; this fake is one
                headers.append(("apns-unique-id", str(uuid.uuid4())))
            return self._verdict(request, Answer(200, headers), None, device_token)
        status, reason = problem
        return self._verdict(request, _error(status, reason, apns_id), reason, device_token)

    def _verdict(self, request: IncomingRequest, answer: Answer, reason: str | None, token: str | None) -> FakeAnswer:
        parsed = None if self.benchmark else parse_json(request.body)
        return FakeAnswer(answer, reason=reason, key=token, json=parsed)

    def _check_request(self, request: IncomingRequest, device_token: str | None) -> tuple[int, str] | None:
        if request.method != "POST":
            return 405, "MethodNotAllowed"
        if device_token is None:
            return 404, "BadPath"
        if not device_token:
            return 400, "MissingDeviceToken"
        if not _HEX_TOKEN.fullmatch(device_token):
            return 400, "BadDeviceToken"
        auth_problem = self._check_authorization(request.header("authorization"))
        if auth_problem is not None:
            return 403, auth_problem
        request.connection.raise_stream_limit(RAISED_STREAM_LIMIT)
        if self.benchmark:
            return None  # accept everything else: the point is throughput, not sender bugs
        return self._check_headers(request)

    def _check_authorization(self, header: str | None) -> str | None:
        if not header:
            return "MissingProviderToken"
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "InvalidProviderToken"
        checked = self._tokens.get(token)
        if checked is None:
            checked = self._verify_provider_token(token)
            self._tokens.put(token, checked)
        if checked.invalid_reason is not None:
            return checked.invalid_reason
        if time.time() - checked.issued_at > PROVIDER_TOKEN_MAX_AGE:
            return "ExpiredProviderToken"
        return None

    def _verify_provider_token(self, token: str) -> _ProviderToken:
        invalid = _ProviderToken("InvalidProviderToken", 0)
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                return invalid
            # Age is judged per request against issued_at, so pyjwt need not check times beyond sanity.
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["ES256"],
                leeway=60,
                options={"require": ["iss", "iat"], "verify_exp": False},
            )
        except jwt.InvalidTokenError:
            return invalid
        if claims.get("iss") != self.team_id:
            return invalid
        return _ProviderToken(None, int(claims["iat"]))

    def _check_headers(self, request: IncomingRequest) -> tuple[int, str] | None:
        seen: set[str] = set()
        for name, _ in request.headers:
            if name in _SINGLE_HEADERS:
                if name in seen:
                    return 400, "DuplicateHeaders"
                seen.add(name)
        topic = request.header("apns-topic")
        if not topic:
            return 400, "MissingTopic"
        if topic != self.topic and not any(topic == self.topic + suffix for suffix in TOPIC_SUFFIXES):
            return 400, "BadTopic"
        apns_id = request.header("apns-id")
        if apns_id is not None and not _UUID.fullmatch(apns_id):
            return 400, "BadMessageId"
        push_type = request.header("apns-push-type")
        if push_type is not None and push_type not in PUSH_TYPES:
            return 400, "InvalidPushType"
        priority = request.header("apns-priority")
        if priority is not None and (priority not in PRIORITIES or (push_type == "background" and priority == "10")):
            return 400, "BadPriority"
        expiration = request.header("apns-expiration")
        if expiration is not None and not expiration.isdigit():
            return 400, "BadExpirationDate"
        collapse_id = request.header("apns-collapse-id")
        if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID:
            return 400, "BadCollapseId"
        if not request.body:
            return 400, "PayloadEmpty"
        if len(request.body) > (MAX_VOIP_PAYLOAD if push_type == "voip" else MAX_PAYLOAD):
            return 413, "PayloadTooLarge"
        return None


def _error(
    status: int,
    reason: str,
    apns_id: str,
    timestamp_ms: int | None = None,
    extra_headers: list[tuple[str, str]] | None = None,
) -> Answer:
    body: dict[str, str | int] = {"reason": reason}
    if timestamp_ms is not None:
        body["timestamp"] = timestamp_ms
    return json_answer(status, body, [("apns-id", apns_id), *(extra_headers or [])])
