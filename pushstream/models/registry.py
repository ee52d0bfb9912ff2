"""`pushstream.devices` and `pushstream.preferences`: device registrations and user preferences."""

import base64
import binascii
import ipaddress
import re
import socket
import zoneinfo
from fnmatch import fnmatchcase
from typing import Any, Optional
from urllib.parse import urlsplit

import faust

from pushstream.config import AppSettings, Settings
from pushstream.models.base import Fields, Invalid

PLATFORMS = ("apns", "fcm", "webpush")
_DEVICE_FIELDS = frozenset(
    {"type", "app_id", "user_id", "device_id", "platform", "token", "subscription", "locale", "timezone",
     "app_version", "tags"}
)
_PREFERENCE_FIELDS = frozenset(
    {"app_id", "user_id", "channels", "categories", "quiet_hours", "timezone", "max_per_day"}
)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}([-+.][0-9A-Za-z.-]+)?$")


class DeviceEvent(faust.Record, include_metadata=False):
    """One registration change. ``type`` is register or unregister."""

    type: str
    app_id: str
    user_id: str
    device_id: str
    platform: Optional[str] = None
    token: Optional[str] = None
    subscription: Optional[dict] = None
    locale: Optional[str] = None
    timezone: Optional[str] = None
    app_version: Optional[str] = None
    tags: Optional[list] = None


class PreferenceEvent(faust.Record, include_metadata=False):
    """Replaces the named fields of a user's preferences; ``fields`` lists which were named."""

    app_id: str
    user_id: str
    fields: list
    channels: Optional[dict] = None
    categories: Optional[dict] = None
    quiet_hours: Optional[dict] = None
    timezone: Optional[str] = None
    max_per_day: Optional[dict] = None


def is_version(value: Any) -> bool:
    """A dotted version as devices report it (`app_version`) and segments compare it (`app_version_gte`)."""
    return isinstance(value, str) and len(value) <= 64 and _VERSION.fullmatch(value) is not None


def known_app(settings: Settings, fields: Fields) -> tuple[str, AppSettings]:
    app_id = fields.text("app_id", max_len=128)
    app = settings.app(app_id)
    if app is None:
        raise Invalid("unknown_app", f"app {app_id!r} is not configured")
    return app_id, app


def _timezone(value: Any) -> Optional[str]:
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise Invalid("bad_field", f"'timezone' {value!r} is not an IANA time zone") from None
    return str(value)


def _b64url(value: Any, name: str, length: int) -> bytes:
    if not isinstance(value, str):
        raise Invalid("bad_subscription", f"subscription key {name!r} must be a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise Invalid("bad_subscription", f"subscription key {name!r} is not base64url") from None
    if len(raw) != length:
        raise Invalid("bad_subscription", f"subscription key {name!r} must be {length} bytes, got {len(raw)}")
    return raw


def endpoint_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """SSRF guard: the host must match an allowed pattern; private and loopback hosts only when listed exactly."""
    host = host.lower().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    # Names that resolve to loopback by definition, and IPv4 literals in the legacy forms the resolver still
    # accepts ("127.1", "2130706433", "0x7f.0.0.1"), are treated like private addresses.
    special = host.rstrip(".") == "localhost" or host.endswith((".localhost", ".localhost."))
    if ip is None and not special:
        try:
            socket.inet_aton(host)
            special = True
        except (OSError, ValueError):
            pass
    if ip is not None or special:
        private = ip is None or not ip.is_global or ip.is_multicast
        if private:
            return host in {a.lower().strip("[]") for a in allowed}
    return any(fnmatchcase(host, pattern.lower()) for pattern in allowed)


def _subscription(value: Any, app: AppSettings) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid("missing_field", "'subscription' is required for webpush")
    endpoint = value.get("endpoint")
    keys = value.get("keys")
    if not isinstance(endpoint, str) or len(endpoint) > 2048:
        raise Invalid("bad_subscription", "'subscription.endpoint' must be a URL")
    try:
        url = urlsplit(endpoint)
        url.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise Invalid("bad_subscription", "'subscription.endpoint' is not a valid URL") from None
    if url.scheme not in ("https", "http") or not url.hostname:
        raise Invalid("bad_subscription", "'subscription.endpoint' must be an https URL")
    allowed = app.webpush.allowed_endpoint_hosts if app.webpush else ()
    if not endpoint_allowed(url.hostname, allowed):
        raise Invalid("endpoint_not_allowed", f"push service host {url.hostname!r} is not allowed for this app")
    if url.scheme == "http" and url.hostname not in allowed:
        raise Invalid("bad_subscription", "'subscription.endpoint' must use https")
    if not isinstance(keys, dict):
        raise Invalid("bad_subscription", "'subscription.keys' must hold p256dh and auth")
    p256dh = _b64url(keys.get("p256dh"), "p256dh", 65)
    if p256dh[0] != 4:
        raise Invalid("bad_subscription", "'p256dh' must be an uncompressed P-256 point")
    _b64url(keys.get("auth"), "auth", 16)
    return {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}


def parse_device_event(data: dict[str, Any], settings: Settings) -> DeviceEvent:
    """Validate a device event from a producer or the HTTP API."""
    f = Fields(data, _DEVICE_FIELDS)
    kind = f.choice("type", ("register", "unregister"), default="register")
    app_id, app = known_app(settings, f)
    user_id = f.text("user_id")
    device_id = f.text("device_id")
    if kind == "unregister":
        return DeviceEvent(type=kind, app_id=app_id, user_id=user_id, device_id=device_id)
    platform = f.choice("platform", PLATFORMS)
    token = subscription = None
    if platform == "webpush":
        subscription = _subscription(data.get("subscription"), app)
    else:
        token = f.text("token", max_len=4096)
        if platform == "apns" and (
            not _HEX.fullmatch(token) or len(token) % 2 or not 16 <= len(token) <= 400
        ):
            raise Invalid("bad_token", "an APNs token is an even number of hex digits")
        if platform == "fcm" and not token.isprintable():
            raise Invalid("bad_token", "an FCM token must be printable")
    locale = f.text("locale", required=False, max_len=35)
    if locale is not None and not _LOCALE.fullmatch(locale):
        raise Invalid("bad_field", f"'locale' {locale!r} is not a language tag")
    app_version = f.text("app_version", required=False, max_len=64)
    if app_version is not None and not is_version(app_version):
        raise Invalid("bad_field", f"'app_version' {app_version!r} is not a dotted version")
    return DeviceEvent(
        type=kind,
        app_id=app_id,
        user_id=user_id,
        device_id=device_id,
        platform=platform,
        token=token,
        subscription=subscription,
        locale=locale.replace("_", "-") if locale else None,
        timezone=_timezone(data.get("timezone")),
        app_version=app_version,
        tags=f.text_list("tags", max_items=settings.limits.max_tags, max_len=64),
    )


def _bool_map(value: Any, name: str) -> Optional[dict[str, bool]]:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
        raise Invalid("bad_field", f"{name!r} must map names to true/false")
    return {str(k): v for k, v in value.items()}


def parse_preference_event(data: dict[str, Any], settings: Settings) -> PreferenceEvent:
    """Validate a preference event; null for a field clears it."""
    f = Fields(data, _PREFERENCE_FIELDS)
    app_id, _ = known_app(settings, f)
    user_id = f.text("user_id")
    named = sorted(set(data) & (_PREFERENCE_FIELDS - {"app_id", "user_id"}))
    if not named:
        raise Invalid("missing_field", "a preference event must name at least one preference")
    quiet = f.mapping("quiet_hours")
    if quiet is not None and (
        set(quiet) != {"start", "end"}
        or not all(isinstance(quiet[k], str) and _HHMM.fullmatch(quiet[k]) for k in quiet)
    ):
        raise Invalid("bad_field", "'quiet_hours' must be {\"start\": \"HH:MM\", \"end\": \"HH:MM\"}")
    caps = f.mapping("max_per_day")
    if caps is not None and not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10_000 for v in caps.values()
    ):
        raise Invalid("bad_field", "'max_per_day' must map channels to counts from 0 to 10000")
    return PreferenceEvent(
        app_id=app_id,
        user_id=user_id,
        fields=named,
        channels=_bool_map(data.get("channels"), "channels"),
        categories=_bool_map(data.get("categories"), "categories"),
        quiet_hours=quiet,
        timezone=_timezone(data.get("timezone")),
        max_per_day=caps,
    )
