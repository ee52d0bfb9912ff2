"""Local development credentials for the fake push providers.

One directory holds everything a sender and the fakes need to trust each other: the APNs signing key,
a local CA with a server certificate for localhost, an FCM service account whose ``token_uri`` points at
the fake FCM, a VAPID key and the seed from which Web Push test subscriptions are derived.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import ssl
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_APNS_TOPIC = "com.example.app"
DEFAULT_FCM_PROJECT_ID = "demo-project"

MANIFEST_NAME = "dev-setup.json"
_ID_ALPHABET = string.ascii_uppercase + string.digits
_CERT_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class DevSetup:
    """Paths and identifiers of one local development credential set."""

    directory: Path
    apns_key_file: Path
    apns_key_id: str
    apns_team_id: str
    apns_topic: str
    ca_cert_file: Path
    server_cert_file: Path
    server_key_file: Path
    fcm_service_account_file: Path
    fcm_project_id: str
    fcm_client_email: str
    fcm_private_key_id: str
    fcm_token_uri: str
    vapid_private_key_file: Path
    vapid_public_key: str  # base64url uncompressed point: the browser's applicationServerKey
    webpush_seed: bytes
    apns_endpoint: str
    fcm_endpoint: str
    webpush_origin: str

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly view (paths as strings, seed as hex) for the control API and manifests."""
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, bytes):
                out[name] = value.hex()
            else:
                out[name] = value
        return out


def b64url(data: bytes) -> str:
    """Unpadded base64url, the encoding Web Push and VAPID use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_dev_setup(
    directory: Path,
    *,
    apns_port: int,
    fcm_port: int,
    webpush_port: int,
    seed: bytes | None = None,
    apns_topic: str = DEFAULT_APNS_TOPIC,
    fcm_project_id: str = DEFAULT_FCM_PROJECT_ID,
) -> DevSetup:
    """Create (or reuse) a complete local credential set in ``directory``.

    Keys and certificates already present are reused, so calling this again is cheap and keeps senders'
    trust intact. Port-dependent files (the service account's ``token_uri``, the manifest) are rewritten
    every time, so a second call with the real ports after binding port 0 is the way to fix them up.
    ``seed`` fixes the Web Push subscription seed; without it a stored or fresh random seed is used.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_file = directory / MANIFEST_NAME
    stored: dict[str, Any] = orjson.loads(manifest_file.read_bytes()) if manifest_file.exists() else {}

    apns_key_id = stored.get("apns_key_id") or _random_id()
    apns_team_id = stored.get("apns_team_id") or _random_id()
    webpush_seed = seed if seed is not None else bytes.fromhex(stored.get("webpush_seed") or secrets.token_hex(32))

    apns_key_file = directory / f"AuthKey_{apns_key_id}.p8"
    _ensure_key(apns_key_file, lambda: ec.generate_private_key(ec.SECP256R1()))

    ca_cert_file = directory / "ca.pem"
    ca_key_file = directory / "ca-key.pem"
    server_cert_file = directory / "server.pem"
    server_key_file = directory / "server-key.pem"
    if not all(p.exists() for p in (ca_cert_file, ca_key_file, server_cert_file, server_key_file)):
        _write_certificates(ca_cert_file, ca_key_file, server_cert_file, server_key_file)

    vapid_private_key_file = directory / "vapid.pem"
    vapid_key = _ensure_key(vapid_private_key_file, lambda: ec.generate_private_key(ec.SECP256R1()))
    assert isinstance(vapid_key, ec.EllipticCurvePrivateKey)
    vapid_public_key = b64url(
        vapid_key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )

    fcm_service_account_file = directory / "service-account.json"
    account = _ensure_service_account(fcm_service_account_file, fcm_project_id)
    fcm_token_uri = f"http://127.0.0.1:{fcm_port}/token"
    if account["token_uri"] != fcm_token_uri:
        account["token_uri"] = fcm_token_uri
        _write_atomic(fcm_service_account_file, orjson.dumps(account, option=orjson.OPT_INDENT_2), private=True)

    setup = DevSetup(
        directory=directory,
        apns_key_file=apns_key_file,
        apns_key_id=apns_key_id,
        apns_team_id=apns_team_id,
        apns_topic=apns_topic,
        ca_cert_file=ca_cert_file,
        server_cert_file=server_cert_file,
        server_key_file=server_key_file,
        fcm_service_account_file=fcm_service_account_file,
        fcm_project_id=account["project_id"],
        fcm_client_email=account["client_email"],
        fcm_private_key_id=account["private_key_id"],
        fcm_token_uri=fcm_token_uri,
        vapid_private_key_file=vapid_private_key_file,
        vapid_public_key=vapid_public_key,
        webpush_seed=webpush_seed,
        apns_endpoint=f"https://localhost:{apns_port}",
        fcm_endpoint=f"http://127.0.0.1:{fcm_port}",
        webpush_origin=f"http://127.0.0.1:{webpush_port}",
    )
    _write_atomic(manifest_file, orjson.dumps(setup.to_json(), option=orjson.OPT_INDENT_2), private=True)
    return setup


def server_ssl_context(setup: DevSetup, alpn: Sequence[str]) -> ssl.SSLContext:
    """TLS context for a fake server presenting the localhost certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(setup.server_cert_file, setup.server_key_file)
    context.set_alpn_protocols(list(alpn))
    return context


def client_ssl_context(setup: DevSetup, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """TLS context for a client that trusts the local CA (aioapns sends no ALPN unless given one)."""
    context = ssl.create_default_context(cafile=str(setup.ca_cert_file))
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def load_private_key(path: Path) -> PrivateKeyTypes:
    """Load an unencrypted PEM private key."""
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def _random_id() -> str:
    # Apple's key and team ids are 10 upper-case alphanumerics.
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def _pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ensure_key(path: Path, generate: Callable[[], PrivateKeyTypes]) -> PrivateKeyTypes:
    if path.exists():
        return load_private_key(path)
    key = generate()
    _write_atomic(path, _pem(key), private=True)
    return key


def _ensure_service_account(path: Path, project_id: str) -> dict[str, Any]:
    if path.exists():
        account: dict[str, Any] = orjson.loads(path.read_bytes())
        return account
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": _pem(key).decode("ascii"),
        "client_email": f"pushstream-dev@{project_id}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": "",  # filled in by the caller, it depends on the port
    }


def _write_certificates(ca_cert_file: Path, ca_key_file: Path, server_cert_file: Path, server_key_file: Path) -> None:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate small clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pushstream local dev CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        # Key identifiers keep strict verifiers (Python 3.13's VERIFY_X509_STRICT) happy.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_atomic(ca_key_file, _pem(ca_key), private=True)
    _write_atomic(server_key_file, _pem(server_key), private=True)
    _write_atomic(server_cert_file, server_cert.public_bytes(serialization.Encoding.PEM))
    # The CA certificate goes last: its presence is what marks the set as complete.
    _write_atomic(ca_cert_file, ca_cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_atomic(path: Path, data: bytes, *, private: bool = False) -> None:
    # Readers in other processes never see a half-written key or manifest.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    if private:
        tmp.chmod(0o600)
    os.replace(tmp, path)
