"""`pushstream.notifications`: notification requests."""

import datetime as dt
from typing import Any, Optional

import faust

from pushstream.config import Settings
from pushstream.models.base import Fields, Invalid, parse_hhmm
from pushstream.models.registry import PLATFORMS, is_version, known_app
from pushstream.models.variants import parse_variants
from pushstream.models.vocabulary import DEFAULT_IF_PASSED, IF_PASSED

CHANNELS = ("transactional", "marketing")
PRIORITIES = ("high", "normal")
MAX_TTL_SECONDS = 28 * 24 * 3600  # the longest any provider stores a message (FCM: 4 weeks)
_FIELDS = frozenset(
    {"id", "app_id", "channel", "category", "priority", "target", "title", "body", "data", "localized", "ttl",
     "collapse_key", "send_at", "variants", "send_at_local", "send_on", "if_passed"}
)
_SEGMENT_KEYS = frozenset({"platforms", "tags_any", "locales", "app_version_gte"})
# Keys the providers reserve in the data map (FCM) or beside it (APNs).
_RESERVED_DATA_KEYS = frozenset({"aps", "from", "message_type", "notification"})


class NotificationRequest(faust.Record, include_metadata=False):
    """A validated notification request. ``received_at`` (epoch seconds) anchors the TTL."""

    id: str
    app_id: str
    channel: str
    priority: str
    target: dict
    received_at: float
    category: Optional[str] = None
    title: Optional[str] = None
    body: Optional[str] = None
    data: Optional[dict] = None
    localized: Optional[dict] = None
    ttl: Optional[int] = None
    collapse_key: Optional[str] = None
    send_at: Optional[str] = None
    variants: Optional[list] = None  # models.variants: [{id, weight, title, body, localized}], rules.variants
    # Local-time sends (rules.localtime): "HH:MM" in each user's zone, optionally on a date.
    send_at_local: Optional[str] = None
    send_on: Optional[str] = None
    if_passed: Optional[str] = None

    @property
    def lane(self) -> str:
        return lane_of(self.channel)

    def expires_at(self) -> Optional[float]:
        return None if self.ttl is None else self.received_at + self.ttl


def lane_of(channel: str) -> str:
    """Transactional traffic has its own lane end to end; every other channel shares the bulk lane."""
    return "transactional" if channel == "transactional" else "bulk"


def _target(value: Any, max_users: int) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) != 1:
        raise Invalid("bad_target", "'target' must hold exactly one of user_ids, segment, all, test_devices")
    ((kind, spec),) = value.items()
    if kind == "user_ids":
        if not isinstance(spec, list) or not spec or not all(isinstance(u, str) and 0 < len(u) <= 256 for u in spec):
            raise Invalid("bad_target", "'target.user_ids' must be a non-empty list of user ids")
        if len(spec) > max_users:
            raise Invalid("bad_target", f"'target.user_ids' has {len(spec)} users, the limit is {max_users}")
        return {"user_ids": list(dict.fromkeys(spec))}
    if kind == "all":
        if spec is not True:
            raise Invalid("bad_target", "'target.all' must be true")
        return {"all": True}
    if kind == "test_devices":
        if spec is not True:
            raise Invalid("bad_target", "'target.test_devices' must be true")
        return {"test_devices": True}
    if kind == "segment":
        if not isinstance(spec, dict) or set(spec) - _SEGMENT_KEYS:
            raise Invalid("bad_target", f"'target.segment' keys are {', '.join(sorted(_SEGMENT_KEYS))}")
        for key in ("platforms", "tags_any", "locales"):
            if key in spec and not (isinstance(spec[key], list) and all(isinstance(v, str) for v in spec[key])):
                raise Invalid("bad_target", f"'target.segment.{key}' must be a list of strings")
        if any(p not in PLATFORMS for p in spec.get("platforms", [])):
            raise Invalid("unknown_platform", f"'target.segment.platforms' must be among {', '.join(PLATFORMS)}")
        # Checked like a device's app_version: a run of thousands of digits would stop the router's comparison.
        if "app_version_gte" in spec and not is_version(spec["app_version_gte"]):
            raise Invalid("bad_target", "'target.segment.app_version_gte' must be a dotted version (e.g. 6.4.1)")
        return {"segment": spec}
    raise Invalid("bad_target", f"unknown target {kind!r}: use user_ids, segment, all or test_devices")


def _localized(value: Any) -> Optional[dict[str, dict[str, str]]]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid("bad_field", "'localized' must map locales to {title, body}")
    for locale, texts in value.items():
        if not isinstance(texts, dict) or set(texts) - {"title", "body"} or not all(
            isinstance(t, str) for t in texts.values()
        ):
            raise Invalid("bad_field", f"'localized.{locale}' must be {{\"title\": ..., \"body\": ...}}")
    return {str(k).replace("_", "-").lower(): v for k, v in value.items()}


def parse_send_at(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid("bad_field", "'send_at' must be an ISO-8601 time")
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("bad_field", f"'send_at' {value!r} is not an ISO-8601 time") from None
    if when.tzinfo is None:
        raise Invalid("bad_field", "'send_at' needs a time zone (e.g. a trailing Z)")
    return value


def parse_local_time(data: dict[str, Any]) -> dict[str, Optional[str]]:
    """`send_at_local` ("HH:MM"), `send_on` ("YYYY-MM-DD") and `if_passed` ("tomorrow" | "skip"), checked."""
    at, on, if_passed = data.get("send_at_local"), data.get("send_on"), data.get("if_passed")
    if at is None:
        if on is not None or if_passed is not None:
            raise Invalid("bad_field", "'send_on' and 'if_passed' need 'send_at_local'")
        return {}
    if data.get("send_at") is not None:
        raise Invalid("bad_field", "give either 'send_at' or 'send_at_local', not both")
    try:
        parse_hhmm(at)
    except ValueError as exc:
        raise Invalid("bad_field", f"'send_at_local' {exc}") from None
    if on is not None:
        try:
            if not isinstance(on, str) or len(on) != 10:
                raise ValueError
            dt.date.fromisoformat(on)
        except ValueError:
            raise Invalid("bad_field", f"'send_on' {on!r} is not a date (YYYY-MM-DD)") from None
    if if_passed is not None and if_passed not in IF_PASSED:
        raise Invalid("bad_field", f"'if_passed' must be one of {', '.join(IF_PASSED)}")
    return {"send_at_local": at, "send_on": on, "if_passed": if_passed or DEFAULT_IF_PASSED}


def parse_notification(data: dict[str, Any], settings: Settings, *, received_at: float) -> NotificationRequest:
    """Validate a notification request from a producer or the HTTP API."""
    f = Fields(data, _FIELDS)
    app_id, _ = known_app(settings, f)
    channel = f.choice("channel", CHANNELS, default="transactional")
    title = f.text("title", required=False, max_len=1024, allow_empty=True)
    body = f.text("body", required=False, max_len=4096, allow_empty=True)
    payload_data = f.mapping("data")
    variants = parse_variants(data.get("variants"), _localized)
    if title is None and body is None and not payload_data and not variants:
        raise Invalid("empty_notification", "a notification needs a title, a body or data")
    if payload_data and _RESERVED_DATA_KEYS & set(payload_data):
        reserved = sorted(_RESERVED_DATA_KEYS & set(payload_data))[0]
        raise Invalid("bad_field", f"'data' must not use the reserved key {reserved!r}")
    local = parse_local_time(data)
    return NotificationRequest(
        id=f.text("id", max_len=200),
        app_id=app_id,
        channel=channel,
        priority=f.choice("priority", PRIORITIES, default="high" if channel == "transactional" else "normal"),
        target=_target(data.get("target"), settings.limits.max_target_users),
        received_at=received_at,
        category=f.text("category", required=False, max_len=128),
        title=title,
        body=body,
        data=payload_data,
        localized=_localized(data.get("localized")),
        ttl=f.integer("ttl", minimum=0, maximum=MAX_TTL_SECONDS),
        collapse_key=f.text("collapse_key", required=False, max_len=64),
        send_at=parse_send_at(data.get("send_at")),
        variants=variants,
        send_at_local=local.get("send_at_local"),
        send_on=local.get("send_on"),
        if_passed=local.get("if_passed"),
    )
