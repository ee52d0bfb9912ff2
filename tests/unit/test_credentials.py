"""Every key and credential file is parsed at start-up; a bad one is ONE message naming app, setting, file."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushstream.config import ApnsSettings, AppSettings, ConfigError, FcmSettings, Settings, WebPushSettings
from pushstream.credentials import check_credentials, file_problem
from pushstream.testing.fakes import DevSetup, generate_dev_setup


@pytest.fixture(scope="module", name="setup")
def setup_fixture(tmp_path_factory: pytest.TempPathFactory) -> DevSetup:
    return generate_dev_setup(tmp_path_factory.mktemp("creds"), apns_port=0, fcm_port=0, webpush_port=0)


def pem(key: Any, *, password: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def app_for(setup: DevSetup, **files: Path) -> AppSettings:
    return AppSettings(
        apns=ApnsSettings(key_file=files.get("apns", setup.apns_key_file), key_id="K", team_id="T", topic="t",
                          ca_file=files.get("apns_ca", setup.ca_cert_file)),
        fcm=FcmSettings(credentials_file=files.get("fcm", setup.fcm_service_account_file), project_id="p"),
        webpush=WebPushSettings(vapid_private_key_file=files.get("vapid", setup.vapid_private_key_file),
                                vapid_subject="mailto:ops@example.com"),
    )


def test_the_generated_dev_credentials_pass(setup: DevSetup) -> None:
    check_credentials(Settings(apps={"demo": app_for(setup)}))


P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not a PEM file"),
        (b"secret\n", "not a PEM file"),
        (b"\x00\xff garbage", "not a PEM file"),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", "not a readable PEM private key"),
        (pem(P384), "an EC secp384r1 key"),
        (pem(RSA), "an RSA 2048-bit key"),
        (pem(P256, password=b"pw"), "encrypted"),
    ],
    ids=["empty", "text", "binary", "bad-pem", "p384", "rsa", "encrypted"],
)
@pytest.mark.parametrize("kind", ["apns_key", "vapid"])
def test_bad_ec_keys(tmp_path: Path, content: bytes, problem: str, kind: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    if kind == "vapid" and problem == "not a PEM file":
        problem = "not a readable private key"  # not PEM: the other VAPID formats were tried too
    found = file_problem(path, kind)
    assert found is not None and problem in found
    assert "P-256" in found


@pytest.mark.parametrize("kind", ["apns_key", "vapid"])
def test_a_p256_pem_key_passes(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(pem(P256))
    assert file_problem(path, kind) is None


def test_vapid_accepts_a_raw_base64url_scalar(tmp_path: Path) -> None:
    import base64

    path = tmp_path / "vapid.txt"
    path.write_text(base64.urlsafe_b64encode(P256.private_numbers().private_value.to_bytes(32, "big")).decode())
    assert file_problem(path, "vapid") is None


def service_account(**overrides: Any) -> bytes:
    info: dict[str, Any] = {"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
                            "private_key": pem(RSA).decode(), "token_uri": "https://oauth2.googleapis.com/token"}
    info.update(overrides)
    return orjson.dumps({k: v for k, v in info.items() if v is not None})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"secret\n", "not JSON"),
        (b"[]", "not a JSON object"),
        (service_account(type="authorized_user"), "'type' is 'authorized_user'"),
        (service_account(client_email=None), "missing field(s) client_email"),
        (service_account(private_key=None, token_uri=""), "missing field(s) private_key, token_uri"),
        (service_account(private_key="garbage"), "private_key: not a PEM file"),
        (service_account(private_key=pem(P256).decode()), "private_key: an EC secp256r1 key; expected an RSA"),
    ],
    ids=["text", "array", "type", "no-email", "no-key-no-uri", "garbage-key", "ec-key"],
)
def test_bad_service_accounts(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "sa.json"
    path.write_bytes(content)
    found = file_problem(path, "service_account")
    assert found is not None and problem in found


def test_a_good_service_account_passes(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_bytes(service_account())
    assert file_problem(path, "service_account") is None


def test_a_bad_ca_file(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    found = file_problem(path, "ca")
    assert found is not None and "not a PEM certificate bundle" in found


def test_an_unreadable_file(tmp_path: Path) -> None:
    assert file_problem(tmp_path, "apns_key") is not None  # a directory cannot be read as a file


def test_one_message_names_every_bad_file_with_its_app_and_setting(setup: DevSetup, tmp_path: Path) -> None:
    garbage = tmp_path / "AuthKey_BAD.p8"
    garbage.write_text("secret\n")
    bad_sa = tmp_path / "sa.json"
    bad_sa.write_bytes(service_account(type="user"))
    settings = Settings(apps={"good": app_for(setup), "shop": app_for(setup, apns=garbage, fcm=bad_sa)})
    with pytest.raises(ConfigError) as caught:
        check_credentials(settings)
    message = str(caught.value)
    assert message.count("\n") == 0
    assert f"app 'shop': apns.key_file {garbage}: not a PEM file" in message
    assert f"app 'shop': fcm.credentials_file {bad_sa}: 'type' is 'user'" in message
    assert "'good'" not in message
    assert "secret" not in message  # never the file's content


def test_apps_without_providers_have_nothing_to_check() -> None:
    check_credentials(Settings(apps={"demo": dataclasses.replace(AppSettings())}))


# The worker entry point: a garbage .p8 stops it with the message, exit code non-zero, no traceback. ----------
CONFIG = """\
kafka:
  broker: kafka://127.0.0.1:9
apps:
  demo:
    api_keys: ["k"]
    apns:
      key_file: {key}
      key_id: ABC123DEFG
      team_id: DEF123GHIJ
      topic: com.example.app
"""


@pytest.mark.parametrize("entry", ["sender", "router", "faust"])
def test_the_worker_refuses_to_start_on_a_garbage_p8(tmp_path: Path, entry: str) -> None:
    key = tmp_path / "AuthKey_ABC123DEFG.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    config = tmp_path / "pushstream.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(key=key)))
    if entry == "faust":  # `faust -A pushstream.app worker`, the all-in-one entry
        argv = [str(Path(sys.executable).parent / "faust"), "-A", "pushstream.app", "worker"]
    else:
        # Without --no-apply: the check comes before anything touches Kafka (the broker is unreachable).
        argv = [sys.executable, "-m", "pushstream.cli.main", "--config", str(config), "worker", "--role", entry,
                "--web-port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHSTREAM_")}
    env["PUSHSTREAM_CONFIG"] = str(config)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0] == (f"pushstream: bad credentials, the worker cannot start: app 'demo': apns.key_file {key}: "
                        "not a readable PEM private key; expected the .p8 signing key APNs issued "
                        "(an EC P-256 private key, PKCS#8 PEM)")
