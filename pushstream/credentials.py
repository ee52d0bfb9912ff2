"""Start-up check of every provider key and credential file named in the config (issue 9 §5).

A worker (router or sender role) parses them all before it starts anything: a bad one stops the process with
one message that names the app, the setting, the file and what is wrong, instead of a traceback on the first
send or a green /readyz over a sender that can never deliver. Nothing here logs or returns key material.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushstream.config import ConfigError, Settings

# What google-auth needs from a service-account file to mint OAuth tokens.
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")


def check_credentials(settings: Settings) -> None:
    """Parse every key and credential file of every app; ConfigError listing each problem found."""
    problems: list[str] = []
    for app_id, app in settings.apps.items():
        checks: list[tuple[str, Path | None, str]] = []
        if app.apns is not None:
            checks += [("apns.key_file", app.apns.key_file, "apns_key"), ("apns.ca_file", app.apns.ca_file, "ca")]
        if app.fcm is not None:
            checks += [("fcm.credentials_file", app.fcm.credentials_file, "service_account"),
                       ("fcm.ca_file", app.fcm.ca_file, "ca")]
        if app.webpush is not None:
            checks.append(("webpush.vapid_private_key_file", app.webpush.vapid_private_key_file, "vapid"))
        for setting, path, kind in checks:
            if path is None:
                continue
            problem = file_problem(path, kind)
            if problem is not None:
                problems.append(f"app {app_id!r}: {setting} {path}: {problem}")
    if problems:
        raise ConfigError("bad credentials, the worker cannot start: " + "; ".join(problems))


def file_problem(path: Path, kind: str) -> str | None:
    """What is wrong with one credential file of ``kind`` (apns_key, service_account, vapid, ca), or None."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if kind == "apns_key":
        return _ec_p256_problem(data, "the .p8 signing key APNs issued (an EC P-256 private key, PKCS#8 PEM)")
    if kind == "vapid":
        return _vapid_problem(data)
    if kind == "service_account":
        return _service_account_problem(data)
    if kind == "ca":
        return _ca_problem(path)
    raise ValueError(f"unknown credential kind {kind!r}")  # pragma: no cover - a bug in this module


def _load_pem_key(data: bytes) -> tuple[object | None, str | None]:
    if b"-----BEGIN" not in data:
        return None, "not a PEM file"
    try:
        return serialization.load_pem_private_key(data, password=None), None
    except TypeError:
        return None, "the private key is encrypted (a password-protected key cannot be used)"
    except (ValueError, UnsupportedAlgorithm):
        return None, "not a readable PEM private key"


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC {key.curve.name} key"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA {key.key_size}-bit key"
    return f"a {type(key).__name__.lstrip('_')}"


def _ec_p256_problem(data: bytes, expected: str) -> str | None:
    key, problem = _load_pem_key(data)
    if problem is not None:
        return f"{problem}; expected {expected}"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        return f"{_describe(key)}; expected {expected}"
    return None


def _vapid_problem(data: bytes) -> str | None:
    """The formats `providers/webpush/vapid.load_vapid_key` accepts: PEM, base64url DER or raw scalar."""
    expected = "a P-256 private key (PEM, or base64url of its DER or 32-byte scalar)"
    if b"-----BEGIN" in data:
        return _ec_p256_problem(data, expected)
    try:
        text = data.decode("ascii").strip()
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(raw) == 32:
            ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            return None
        key: object = serialization.load_der_private_key(raw, password=None)
    except (UnicodeDecodeError, ValueError, TypeError, UnsupportedAlgorithm):
        return f"not a readable private key; expected {expected}"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        return f"{_describe(key)}; expected {expected}"
    return None


def _service_account_problem(data: bytes) -> str | None:
    try:
        info = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "not JSON; expected the service-account key file from the Google Cloud console"
    if not isinstance(info, dict):
        return "not a JSON object; expected a service-account key file"
    if info.get("type") != "service_account":
        return f"'type' is {info.get('type')!r}, expected 'service_account'"
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not isinstance(info.get(name), str) or not info[name]]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    key, problem = _load_pem_key(info["private_key"].encode("utf-8"))
    if problem is not None:
        return f"private_key: {problem}; expected an RSA private key in PEM"
    if not isinstance(key, rsa.RSAPrivateKey):
        return f"private_key: {_describe(key)}; expected an RSA private key"
    return None


def _ca_problem(path: Path) -> str | None:
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError) as exc:
        return f"not a PEM certificate bundle ({getattr(exc, 'reason', None) or exc})"
    return None
