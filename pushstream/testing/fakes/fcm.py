"""Fake FCM HTTP v1 API plus its OAuth2 token endpoint, on one plain-http port.

The port speaks HTTP/2 with prior knowledge (h2c) *and* HTTP/1.1, chosen per connection:
- ``POST /token`` is what google-auth's ``requests`` transport calls (HTTP/1.1), through the service
  account's ``token_uri``;
- ``POST /v1/projects/{project_id}/messages:send`` multiplexes over HTTP/2 when the client is
  ``httpx.AsyncClient(http1=False, http2=True)``: httpx only does h2 on http:// URLs when HTTP/1.1 is
  disabled (with ``http2=True`` alone it falls back to HTTP/1.1, which also works here).
Error bodies follow providers.md §2.3: branch on ``details[].errorCode`` of the FcmError detail.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
import urllib.parse
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushstream.testing.fakes.base import (
    FakeAnswer,
    FakeProvider,
    Fault,
    RecordedRequest,
    json_answer,
    parse_json,
    retry_after_header,
)
from pushstream.testing.fakes.credentials import DevSetup
from pushstream.testing.fakes.httpserver import Answer, IncomingRequest

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCEPTED_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/firebase.messaging", "https://www.googleapis.com/auth/cloud-platform"}
)
ACCESS_TOKEN_LIFETIME = 3599
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
MAX_MESSAGE_SIZE = 4096
MAX_TOPIC_MESSAGE_SIZE = 2048
TARGET_FIELDS = ("token", "topic", "condition")
RESERVED_DATA_KEYS = frozenset({"from", "message_type"})
RESERVED_DATA_PREFIXES = ("google.", "gcm.notification.")

CANONICAL_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
# errorCode used when a script gives only a status.
DEFAULT_ERROR_CODES = {
    400: "INVALID_ARGUMENT",
    401: "THIRD_PARTY_AUTH_ERROR",
    403: "SENDER_ID_MISMATCH",
    404: "UNREGISTERED",
    429: "QUOTA_EXCEEDED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
ERROR_MESSAGES = {
    "INVALID_ARGUMENT": "The registration token is not a valid FCM registration token",
    "UNREGISTERED": "Requested entity was not found.",
    "SENDER_ID_MISMATCH": "SenderId mismatch",
    "QUOTA_EXCEEDED": "Quota exceeded.",
    "UNAVAILABLE": "The service is currently unavailable.",
    "INTERNAL": "Internal error encountered.",
    "THIRD_PARTY_AUTH_ERROR": "Auth error from APNS or Web Push Service",
}
# Scripting this reason simulates a rejected OAuth token (401 without FcmError) rather than an FCM error.
OAUTH_REJECTED = "UNAUTHENTICATED"
_UNAUTHENTICATED_MESSAGE = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential."
)
_SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
_DURATION = re.compile(r"\d+(\.\d{1,9})?s")


def fcm_error(
    status: int,
    message: str,
    *,
    error_code: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Answer:
    """A Google API error body; ``error_code`` adds the FcmError detail."""
    all_details = list(details or [])
    if error_code is not None:
        all_details.insert(0, {"@type": FCM_ERROR_TYPE, "errorCode": error_code})
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": CANONICAL_STATUS.get(status, "UNKNOWN"),
    }
    if all_details:
        error["details"] = all_details
    return json_answer(status, {"error": error}, headers or [])


def _bad_request(field: str, description: str) -> tuple[Answer, str]:
    detail = {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": field, "description": description}]}
    return fcm_error(400, description, details=[detail]), "INVALID_ARGUMENT"


def _unauthenticated() -> Answer:
    return fcm_error(
        401,
        _UNAUTHENTICATED_MESSAGE,
        headers=[("www-authenticate", 'Bearer realm="https://accounts.google.com/", error="invalid_token"')],
    )


class FakeFCM(FakeProvider):
    """Fake FCM v1 send endpoint and OAuth token endpoint (see the module docstring for client settings)."""

    name = "fcm"
    gone_status = 404

    def configure(self, setup: DevSetup) -> None:
        account = orjson.loads(setup.fcm_service_account_file.read_bytes())
        self.project_id: str = account["project_id"]
        self.client_email: str = account["client_email"]
        self.private_key_id: str = account["private_key_id"]
        private_key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey)
        self._public_key = private_key.public_key()
        self.token_lifetime = ACCESS_TOKEN_LIFETIME  # seconds; assign to make clients refresh sooner
        self.token_requests = 0
        self._access_tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self._message_ids = itertools.count(1)

    @property
    def token_url(self) -> str:
        """Where the service account's token_uri must point."""
        return f"{self.url}/token"

    @property
    def send_url(self) -> str:
        """The messages:send URL for the configured project."""
        return f"{self.url}/v1/projects/{self.project_id}/messages:send"

    @property
    def messages(self) -> list[RecordedRequest]:
        """Recorded messages:send requests (token requests left out)."""
        return [r for r in self.records if r.path.endswith(":send")]

    def revoke_access_tokens(self) -> None:
        """Invalidate every issued access token: the next send gets 401 and the client must refresh."""
        self._access_tokens.clear()

    def reset(self) -> None:
        super().reset()
        self.token_requests = 0

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "token_requests": self.token_requests}

    def handle(self, request: IncomingRequest) -> FakeAnswer:
        """Route to the token endpoint or messages:send."""
        if request.path == "/token":
            return self._issue_token(request)
        match = _SEND_PATH.fullmatch(request.path)
        if match is None or request.method != "POST":
            return FakeAnswer(fcm_error(404, "Requested entity was not found."), reason="NOT_FOUND")
        if not self._authorized(request.header("authorization")):
            return FakeAnswer(_unauthenticated(), reason=OAUTH_REJECTED)
        if match.group(1) != self.project_id:
            return FakeAnswer(fcm_error(403, "The caller does not have permission"), reason="PERMISSION_DENIED")
        payload = parse_json(request.body)
        message = payload.get("message") if isinstance(payload, dict) else None
        target = _target(message) if isinstance(message, dict) else None
        if not self.benchmark:
            problem = _check_payload(payload)
            if problem is not None:
                return FakeAnswer(problem[0], reason=problem[1], key=target, json=payload)
        fault = self.fault_for(target)
        if fault is not None:
            answer, reason = _fault_answer(fault)
            return FakeAnswer(answer, reason=reason, key=target, json=payload)
        if isinstance(payload, dict) and payload.get("validate_only") is True:
            name = f"projects/{self.project_id}/messages/fake_message_for_dry_run"
        else:
            name = f"projects/{self.project_id}/messages/0:{next(self._message_ids)}%fake"
        return FakeAnswer(json_answer(200, {"name": name}), key=target, json=None if self.benchmark else payload)

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        expiry = self._access_tokens.get(header[len("Bearer ") :])
        return expiry is not None and expiry > time.time()

    def _issue_token(self, request: IncomingRequest) -> FakeAnswer:
        self.token_requests += 1
        form = urllib.parse.parse_qs(request.body.decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        if request.method != "POST" or grant_type != JWT_BEARER_GRANT:
            answer = json_answer(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"})
            return FakeAnswer(answer, reason="unsupported_grant_type")
        claims, problem = self._check_assertion(form.get("assertion", [""])[0])
        recorded = {"grant_type": grant_type, "claims": claims}
        if problem is not None:
            error, description = problem
            answer = json_answer(400, {"error": error, "error_description": description})
            return FakeAnswer(answer, reason=error, json=recorded)
        token = "ya29.fake-" + secrets.token_urlsafe(32)
        self._access_tokens[token] = time.time() + self.token_lifetime
        body = {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        return FakeAnswer(json_answer(200, body), key=self.client_email, json=recorded)

    def _check_assertion(self, assertion: str) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        try:
            header = jwt.get_unverified_header(assertion)
            # google-auth always sends aud https://oauth2.googleapis.com/token, even to a custom token_uri.
            claims: dict[str, Any] = jwt.decode(
                assertion,
                self._public_key,
                algorithms=["RS256"],
                leeway=60,
                options={"verify_aud": False, "require": ["iss", "iat", "exp"]},
            )
        except jwt.InvalidTokenError as exc:
            return None, ("invalid_grant", f"Invalid JWT: {exc}")
        if header.get("kid") not in (None, self.private_key_id):
            return claims, ("invalid_grant", "Invalid JWT Signature.")
        if claims.get("iss") != self.client_email:
            return claims, ("invalid_grant", "Invalid issuer")
        if not ACCEPTED_SCOPES.intersection(str(claims.get("scope", "")).split()):
            return claims, ("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        return claims, None


def _target(message: dict[str, Any]) -> str | None:
    for field in TARGET_FIELDS:
        value = message.get(field)
        if isinstance(value, str) and value:
            return value
    return None


def _check_payload(payload: Any) -> tuple[Answer, str] | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
        return _bad_request("message", "Invalid JSON payload received. 'message' must be an object.")
    message: dict[str, Any] = payload["message"]
    targets = [field for field in TARGET_FIELDS if message.get(field)]
    if len(targets) != 1:
        return _bad_request("message", "Exactly one of message.token, message.topic, message.condition must be set.")
    data = message.get("data")
    if data is not None:
        if not isinstance(data, dict):
            return _bad_request("message.data", "Invalid value at 'message.data' (type.googleapis.com/map)")
        for index, (key, value) in enumerate(data.items()):
            if not isinstance(value, str):
                where = f"message.data[{index}].value"
                return _bad_request(where, f"Invalid value at '{where}' (TYPE_STRING), {orjson.dumps(value).decode()}")
            if key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES):
                return fcm_error(400, f"Invalid data payload key: {key}", error_code="INVALID_ARGUMENT"), (
                    "INVALID_ARGUMENT"
                )
    android = message.get("android")
    ttl = android.get("ttl") if isinstance(android, dict) else None
    if ttl is not None and not (isinstance(ttl, str) and _DURATION.fullmatch(ttl)):
        return _bad_request("message.android.ttl", "Invalid value at 'message.android.ttl' (Duration)")
    # FCM counts keys and values of the payload; the compact JSON without the target is a close stand-in.
    size = len(orjson.dumps({k: v for k, v in message.items() if k not in TARGET_FIELDS}))
    limit = MAX_MESSAGE_SIZE if targets[0] == "token" else MAX_TOPIC_MESSAGE_SIZE
    if size > limit:
        return fcm_error(400, "Message is too big", error_code="INVALID_ARGUMENT"), "INVALID_ARGUMENT"
    return None


def _fault_answer(fault: Fault) -> tuple[Answer, str]:
    if fault.unregistered_at_ms is not None:
        return fcm_error(404, ERROR_MESSAGES["UNREGISTERED"], error_code="UNREGISTERED"), "UNREGISTERED"
    error_code = fault.reason or DEFAULT_ERROR_CODES.get(fault.status, "UNSPECIFIED_ERROR")
    if error_code == OAUTH_REJECTED:
        return _unauthenticated(), OAUTH_REJECTED
    message = ERROR_MESSAGES.get(error_code, "Unspecified error.")
    return fcm_error(fault.status, message, error_code=error_code, headers=retry_after_header(fault)), error_code
