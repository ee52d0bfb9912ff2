"""Encoding and the validation vocabulary shared by every record type."""

import datetime as dt
from typing import Any, TypeVar

import faust
import orjson

R = TypeVar("R", bound=faust.Record)


class Invalid(ValueError):
    """A record that cannot be processed. ``reason`` is a short machine-readable code, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(record: faust.Record) -> bytes:
    """Serialize a record as the plain JSON object of its fields (no Faust metadata on the wire)."""
    return orjson.dumps(record.asdict())


def decode(cls: type[R], raw: bytes) -> R:
    """Decode a record that pushstream itself wrote."""
    return cls(**orjson.loads(raw))


def load_json_object(raw: bytes | None, *, max_bytes: int) -> dict[str, Any]:
    """Parse external input: oversize, non-JSON and non-object values are rejected with a reason."""
    if raw is None:
        raise Invalid("empty", "record has no value")
    if len(raw) > max_bytes:
        raise Invalid("oversize", f"record is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid("bad_json", f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Invalid("bad_json", f"expected a JSON object, got {type(value).__name__}")
    return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(ts: dt.datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, as in the contract's examples."""
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class Fields:
    """Typed access to a parsed JSON object that turns every problem into an Invalid naming the field."""

    def __init__(self, data: dict[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise Invalid("unknown_field", f"unknown field {unknown[0]!r}")
        self.data = data

    def text(self, name: str, *, required: bool = True, max_len: int = 256, allow_empty: bool = False) -> Any:
        value = self.data.get(name)
        if value is None:
            if required:
                raise Invalid("missing_field", f"{name!r} is required")
            return None
        if not isinstance(value, str):
            raise Invalid("bad_field", f"{name!r} must be a string")
        if not value and not allow_empty:
            raise Invalid("bad_field", f"{name!r} must not be empty")
        if len(value) > max_len:
            raise Invalid("bad_field", f"{name!r} is longer than {max_len} characters")
        return value

    def choice(self, name: str, choices: tuple[str, ...], *, default: str | None = None) -> Any:
        value = self.data.get(name, default)
        if value is None:
            raise Invalid("missing_field", f"{name!r} is required")
        if value not in choices:
            reason = "unknown_platform" if name == "platform" else "bad_field"
            raise Invalid(reason, f"{name!r} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> Any:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise Invalid("bad_field", f"{name!r} must be an integer from {minimum} to {maximum}")
        return value

    def mapping(self, name: str) -> Any:
        value = self.data.get(name)
        if value is not None and not isinstance(value, dict):
            raise Invalid("bad_field", f"{name!r} must be an object")
        return value

    def text_list(self, name: str, *, max_items: int, max_len: int = 256) -> Any:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= max_len for v in value):
            raise Invalid("bad_field", f"{name!r} must be a list of non-empty strings")
        if len(value) > max_items:
            raise Invalid("bad_field", f"{name!r} has more than {max_items} items")
        return value


def at_millis(at: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 time with a zone; `Invalid` (bad_field) otherwise."""
    try:
        ts = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("bad_field", f"'at' {at!r} is not an ISO-8601 time") from None
    if ts.tzinfo is None:
        raise Invalid("bad_field", f"'at' {at!r} has no time zone")
    return int(ts.timestamp() * 1000)


def parse_hhmm(value: str) -> dt.time:
    """"HH:MM" (00:00 to 23:59) as a time; ValueError otherwise."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise ValueError(f"{value!r} is not HH:MM")
    hours, minutes = value[:2], value[3:]
    if not (hours.isdigit() and minutes.isdigit()) or int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"{value!r} is not a time of day (00:00 to 23:59)")
    return dt.time(int(hours), int(minutes))
