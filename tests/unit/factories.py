"""Shared builders for the unit tests: settings with a demo app, valid raw events, rule-level dicts.

Nothing here touches Kafka, the network or the wall clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import textwrap
from pathlib import Path
from typing import Any, cast

from pushstream.config import (
    ApnsSettings,
    AppSettings,
    FcmSettings,
    LimitsSettings,
    Settings,
    WebPushSettings,
)
from pushstream.models.values import Device
from pushstream.rules.keys import token_fingerprint

APP_ID = "demo"
API_KEY = "demo-secret-key"
APNS_TOKEN = "ab" * 32  # 64 hex digits, like a real device token
FCM_TOKEN = "fcm-registration-token:APA91bExample_-"
ALLOWED_HOSTS: tuple[str, ...] = (
    "*.push.services.mozilla.com",
    "fcm.googleapis.com",
    "*.notify.windows.com",
    "web.push.apple.com",
)
WEBPUSH_ENDPOINT = "https://updates.push.services.mozilla.com/wpush/v2/abc"
# 2026-11-22 is a Sunday; 12:00 UTC is 13:00 in Berlin (CET, UTC+1).
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


P256DH = b64url(b"\x04" + bytes(range(64)))  # an uncompressed P-256 point is 65 bytes starting with 0x04
AUTH = b64url(bytes(range(16)))


def subscription(
    endpoint: str = WEBPUSH_ENDPOINT, *, p256dh: str = P256DH, auth: str = AUTH
) -> dict[str, Any]:
    return {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}


def app_settings(
    *,
    apns: bool = True,
    fcm: bool = True,
    webpush: bool = True,
    allowed_hosts: tuple[str, ...] = ALLOWED_HOSTS,
    api_keys: tuple[str, ...] = (API_KEY,),
) -> AppSettings:
    """An app built directly (no file checks: the paths need not exist)."""
    return AppSettings(
        api_keys=api_keys,
        apns=ApnsSettings(
            key_file=Path("AuthKey.p8"), key_id="ABC123DEFG", team_id="DEF123GHIJ", topic="com.example.app"
        )
        if apns
        else None,
        fcm=FcmSettings(credentials_file=Path("sa.json"), project_id="demo-project") if fcm else None,
        webpush=WebPushSettings(
            vapid_private_key_file=Path("vapid.pem"),
            vapid_subject="mailto:ops@example.com",
            allowed_endpoint_hosts=allowed_hosts,
        )
        if webpush
        else None,
    )


def settings(*, limits: LimitsSettings | None = None, **app_kwargs: Any) -> Settings:
    """Settings with one app, ``demo``."""
    return Settings(apps={APP_ID: app_settings(**app_kwargs)}, limits=limits or LimitsSettings())


# --- config files ---------------------------------------------------------------------------------

SECRET_FILES = ("keys/AuthKey_ABC123DEFG.p8", "keys/service-account.json", "keys/vapid.pem", "certs/ca.pem")

FULL_CONFIG = """\
kafka:
  broker: kafka://127.0.0.1:9092
  topic_prefix: "test."
web:
  port: 6066
apps:
  demo:
    api_keys: ["demo-secret-key"]
    apns:
      key_file: keys/AuthKey_ABC123DEFG.p8
      key_id: ABC123DEFG
      team_id: DEF123GHIJ
      topic: com.example.app
      environment: production
      endpoint: https://localhost:8443
      ca_file: certs/ca.pem
    fcm:
      credentials_file: keys/service-account.json
      project_id: demo-project
      endpoint: http://127.0.0.1:8081
    webpush:
      vapid_private_key_file: keys/vapid.pem
      vapid_subject: mailto:ops@example.com
      allowed_endpoint_hosts: ["*.push.services.mozilla.com", "fcm.googleapis.com"]
"""


def write_secrets(base: Path, files: tuple[str, ...] = SECRET_FILES) -> None:
    for name in files:
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret\n", encoding="utf-8")


def write_config(
    base: Path, text: str = FULL_CONFIG, *, secrets: bool = True, name: str = "pushstream.yaml"
) -> Path:
    if secrets:
        write_secrets(base)
    path = base / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- raw external events (what producers publish) -------------------------------------------------


def raw_device(platform: str = "apns", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "register",
        "app_id": APP_ID,
        "user_id": "u-1",
        "device_id": "d-1",
        "platform": platform,
    }
    if platform == "apns":
        event["token"] = APNS_TOKEN
    elif platform == "fcm":
        event["token"] = FCM_TOKEN
    elif platform == "webpush":
        event["subscription"] = subscription()
    event.update(overrides)
    return event


def raw_notification(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "id": "n-42",
        "app_id": APP_ID,
        "channel": "transactional",
        "target": {"user_ids": ["u-1"]},
        "title": "Your order shipped",
        "body": "Arrives Tuesday",
    }
    request.update(overrides)
    return request


def without(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in names}


# --- rule-level dicts (what the tables hold) ------------------------------------------------------


def device(device_id: str = "d-1", platform: str = "apns", **overrides: Any) -> Device:
    """A registry device as `rules.registry.register` stores it (``overrides`` are not checked against `Device`)."""
    token = APNS_TOKEN if platform == "apns" else FCM_TOKEN if platform == "fcm" else None
    sub = subscription() if platform == "webpush" else None
    address = sub["endpoint"] if sub else token
    assert address is not None
    record: dict[str, Any] = {
        "device_id": device_id,
        "platform": platform,
        "token": token,
        "subscription": sub,
        "fingerprint": token_fingerprint(platform, address),
        "locale": None,
        "timezone": None,
        "app_version": None,
        "tags": [],
        "active": True,
        "inactive_reason": None,
        "inactive_at": None,
        "registered_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
    }
    record.update(overrides)
    return cast(Device, record)


def notification(**overrides: Any) -> dict[str, Any]:
    """A validated notification as the router sees it (NotificationRequest.asdict())."""
    n: dict[str, Any] = {
        "id": "n-42",
        "app_id": APP_ID,
        "channel": "transactional",
        "priority": "high",
        "target": {"user_ids": ["u-1"]},
        "received_at": NOW.timestamp(),
        "category": None,
        "title": "Title",
        "body": "Body",
        "data": None,
        "localized": None,
        "ttl": None,
        "collapse_key": None,
        "send_at": None,
    }
    n.update(overrides)
    return n
