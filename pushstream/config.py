"""pushstream.yaml: loading and validation into one typed, frozen settings object.

Unknown keys, missing required keys, wrong types and missing secret files are start-up errors that name the
offending key or path; a misspelt key silently ignored is how a production config goes wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import types
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pushstream.policies import ATTEMPT_CLASSES, BreakerPolicy, GuardPolicy

DEFAULT_CONFIG_PATH = "pushstream.yaml"
ENV_CONFIG = "PUSHSTREAM_CONFIG"
# Environment variables that may override the kafka section (contract §3).
ENV_KAFKA_OVERRIDES = {
    "PUSHSTREAM_KAFKA_BROKER": "broker",
    "PUSHSTREAM_KAFKA_TOPIC_PREFIX": "topic_prefix",
    "PUSHSTREAM_KAFKA_TOPICS_FILE": "topics_file",
}


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message names the key or path."""


@dataclass(frozen=True)
class KafkaSettings:
    broker: str = "kafka://127.0.0.1:9092"
    topic_prefix: str = ""
    # Where the topic layout lives; relative paths are resolved against the config file's directory.
    topics_file: str | None = None


@dataclass(frozen=True)
class WebSettings:
    port: int = 6066
    host: str = "127.0.0.1"
    bind: str = "127.0.0.1"


@dataclass(frozen=True)
class ApnsSettings:
    key_file: Path
    key_id: str
    team_id: str
    topic: str
    environment: Literal["production", "sandbox"] = "production"
    endpoint: str | None = None
    ca_file: Path | None = None
    max_connections: int = 4
    timeout_seconds: float = 10.0
    # Devices per second to this provider for this app, across all sender processes (see pipeline.sender_processes).
    rate_limit_per_second: float | None = None


@dataclass(frozen=True)
class FcmSettings:
    credentials_file: Path
    project_id: str
    endpoint: str | None = None
    ca_file: Path | None = None
    # HTTP/2 multiplexes ~100 streams per connection; more connections only grow httpcore's per-request
    # bookkeeping (its pool scans every queued request on each assignment).
    max_connections: int = 2
    timeout_seconds: float = 10.0
    rate_limit_per_second: float | None = None


@dataclass(frozen=True)
class WebPushSettings:
    vapid_private_key_file: Path
    vapid_subject: str
    allowed_endpoint_hosts: tuple[str, ...] = ()
    timeout_seconds: float = 10.0
    max_connections: int = 100
    rate_limit_per_second: float | None = None


@dataclass(frozen=True)
class HooksSettings:
    """Per-app hooks (`pushstream.hooks`): ``package.module:function`` names, imported at start-up."""

    pre_send: str | None = None
    post_send: str | None = None
    # A pre-send call (sync: measured, async: awaited with this timeout) or a post-send batch may take this long.
    budget_seconds: float = 0.05


@dataclass(frozen=True)
class AppSettings:
    # Secrets: never in a repr or a log line. After loading, the inline keys and api_keys_file's, together.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    # One key per line; blank lines and lines starting with '#' are ignored (contract §3).
    api_keys_file: Path | None = None
    # The IANA zone of the app's users when neither their preferences nor their device name one.
    default_timezone: str | None = None
    apns: ApnsSettings | None = None
    fcm: FcmSettings | None = None
    webpush: WebPushSettings | None = None
    hooks: HooksSettings | None = None

    def platform_configured(self, platform: str) -> bool:
        return getattr(self, platform, None) is not None

    @property
    def default_zone(self) -> dt.tzinfo:
        """default_timezone as a zone (validated at load time), else UTC."""
        return zoneinfo.ZoneInfo(self.default_timezone) if self.default_timezone else dt.UTC


@dataclass(frozen=True)
class LimitsSettings:
    """Input guards. Provider payload limits are the providers' and live in their modules."""

    max_record_bytes: int = 64 * 1024
    max_target_users: int = 10_000
    max_tags: int = 64


@dataclass(frozen=True)
class PipelineSettings:
    """Batching on the hot path: how many records an agent takes at once and how long it waits for more."""

    ingest_batch: int = 1000
    ingest_within_seconds: float = 0.05
    # The planner (notification requests) waits less: every OTP passes it, and a 50 ms window was half of an idle
    # transactional notification's publish-to-provider time (benchmark hops).
    planner_within_seconds: float = 0.005
    delivery_chunk: int = 500
    # Users a broadcast is routed in per step (the router's unit of resumption): between steps it yields to the
    # other agents, and a rebalance or a cancel (rules.cancel) takes effect at the next step.
    broadcast_step_users: int = 500
    # Delivery batches a sender agent takes at once (each up to delivery_chunk devices), sent concurrently.
    sender_batches: int = 8
    # The bulk lane is throttled so a campaign cannot fill the event loop's ready queue: with the worker's one
    # core saturated, every queued callback is latency for the transactional lane sharing that loop.
    bulk_sender_batches: int = 1
    bulk_max_in_flight: int = 200
    max_attempts: int = 5
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 900.0
    # A provider's Retry-After is honoured up to this many seconds (and never past the notification's TTL).
    retry_after_cap_seconds: float = 300.0
    # Attempts per retry class (throttled, unavailable, transport, reauth; `rules.retry`), else max_attempts.
    max_attempts_by_class: Mapping[str, int] = field(default_factory=dict)
    # Sender processes sharing each app's provider rate limit: each takes rate_limit_per_second / this.
    sender_processes: int = 1
    # A batch waits at most this long for rate-limit tokens; devices beyond that wait in the retry path.
    rate_limit_max_wait_seconds: float = 1.0


@dataclass(frozen=True)
class BreakerSettings:
    """The circuit breaker per (app, provider) in each sender process (pushstream.rules.breaker)."""

    failure_rate: float = 0.5  # opens when failures reach this share of the window's answers...
    min_answers: int = 20  # ...of at least this many
    window_seconds: float = 10.0
    consecutive_failures: int = 10  # or after this many failures in a row
    open_seconds: float = 2.0  # first wait before a probe; doubles after each failed probe...
    max_open_seconds: float = 60.0  # ...up to this
    probe_size: int = 5  # devices in a half-open probe


@dataclass(frozen=True)
class InvalidationGuardSettings:
    """The mass-deactivation guard per (app, provider) in each sender process (pushstream.rules.guard)."""

    share: float = 0.5  # trips when invalid-token answers reach this share of the window's answers...
    min_answers: int = 20  # ...of at least this many
    window_seconds: float = 60.0
    # Over the share with fewer answers: hold the invalid answers this long for more to arrive, then believe them.
    confirm_seconds: float = 5.0
    confirm_min_invalid: int = 5  # ...once the window holds at least this many (fewer are believed at once)


@dataclass(frozen=True)
class RocksDBSettings:
    """Per table partition. Faust's defaults give every partition DB its own 2 GiB block cache.

    Memory is partitions x tables x (block cache + write buffers): with 12 partitions and 5 tables, 16/8x2
    measured 2.9 GB peak RSS on a 1M-device benchmark, hence these smaller defaults.
    """

    block_cache_mb: int = 4
    write_buffer_mb: int = 4
    max_write_buffers: int = 2
    max_open_files: int = 256


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    web: WebSettings = field(default_factory=WebSettings)
    apps: Mapping[str, AppSettings] = field(default_factory=dict)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    rocksdb: RocksDBSettings = field(default_factory=RocksDBSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    invalidation_guard: InvalidationGuardSettings = field(default_factory=InvalidationGuardSettings)
    # Directory of the config file; relative paths inside it were resolved against this.
    base_dir: Path = Path(".")

    def topic(self, name: str) -> str:
        """The broker-side name of a pushstream topic, with the configured prefix."""
        return f"{self.kafka.topic_prefix}{name}"

    def app(self, app_id: str) -> AppSettings | None:
        return self.apps.get(app_id)

    def app_for_key(self, api_key: str) -> str | None:
        for app_id, app in self.apps.items():
            if api_key in app.api_keys:
                return app_id
        return None


# Fields that are paths to files that must exist (secrets and trust anchors).
_FILE_FIELDS = {"key_file", "ca_file", "credentials_file", "vapid_private_key_file", "api_keys_file"}
# Settings fields filled by the loader, never by the file.
_INTERNAL_FIELDS = {"base_dir"}


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the config file (``PUSHSTREAM_CONFIG`` or ``./pushstream.yaml``)."""
    env = os.environ if env is None else env
    config_path = Path(path or env.get(ENV_CONFIG) or DEFAULT_CONFIG_PATH)
    if not config_path.is_file():
        raise ConfigError(f"config file not found: {config_path.resolve()} (set {ENV_CONFIG} to its path)")
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot read the config file: {exc}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    return settings_from_mapping(raw, base_dir=config_path.resolve().parent, env=env, source=str(config_path))


def settings_from_mapping(
    raw: Any, *, base_dir: Path, env: Mapping[str, str] | None = None, source: str = "config"
) -> Settings:
    """Build settings from an already parsed mapping (what the YAML file holds)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    raw = dict(raw)
    kafka = raw.get("kafka") or {}
    if not isinstance(kafka, dict):
        raise ConfigError(f"{source}: kafka: expected a mapping, got {type(kafka).__name__}")
    kafka = dict(kafka)
    for var, key in ENV_KAFKA_OVERRIDES.items():
        if env and env.get(var):
            kafka[key] = env[var]
    raw["kafka"] = kafka
    ctx = _Ctx(base_dir, source)
    settings = _build(Settings, raw, prefix="", ctx=ctx)
    apps = {}
    for app_id, app in settings.apps.items():
        # Keys of user tables and topics are "{app_id}/{user_id}" (pushstream.rules.keys.user_key).
        if not app_id or "/" in app_id:
            raise ConfigError(f"{source}: apps.{app_id}: an app id must be non-empty and without '/'")
        apps[app_id] = _finish_app(app, f"apps.{app_id}.", ctx)
    for name, attempts in settings.pipeline.max_attempts_by_class.items():
        if name not in ATTEMPT_CLASSES:
            raise ConfigError(f"{source}: pipeline.max_attempts_by_class.{name}: unknown retry class "
                              f"(known: {', '.join(ATTEMPT_CLASSES)})")
        if attempts < 1:
            raise ConfigError(f"{source}: pipeline.max_attempts_by_class.{name}: must be at least 1")
    _check_protection(settings, source)
    return dataclasses.replace(settings, apps=apps, base_dir=base_dir)


def _finish_app(app: AppSettings, prefix: str, ctx: _Ctx) -> AppSettings:
    """The checks and merges of one app that need more than a field's type: its time zone, its key file."""
    if app.default_timezone is not None:
        try:
            zoneinfo.ZoneInfo(app.default_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ctx.error(f"{prefix}default_timezone",
                            f"{app.default_timezone!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
    if app.api_keys_file is None:
        return app
    try:
        text = app.api_keys_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # The error names the file, never its content.
        raise ctx.error(f"{prefix}api_keys_file", f"cannot read {app.api_keys_file}: {type(exc).__name__}") from None
    from_file = [line.strip() for line in text.splitlines()]
    keys = [k for k in from_file if k and not k.startswith("#")]
    return dataclasses.replace(app, api_keys=tuple(dict.fromkeys((*app.api_keys, *keys))))


def _check_protection(settings: Settings, source: str) -> None:
    """Rate limits, breaker and guard values the sender could not use are start-up errors too."""
    for app_id, app in settings.apps.items():
        for platform in ("apns", "fcm", "webpush"):
            rate = getattr(getattr(app, platform), "rate_limit_per_second", None)
            if rate is not None and not rate > 0:
                raise ConfigError(f"{source}: apps.{app_id}.{platform}.rate_limit_per_second: must be > 0")
    if settings.pipeline.sender_processes < 1:
        raise ConfigError(f"{source}: pipeline.sender_processes: must be at least 1")
    if settings.pipeline.rate_limit_max_wait_seconds < 0:
        raise ConfigError(f"{source}: pipeline.rate_limit_max_wait_seconds: must be >= 0")
    for section, policy in (("breaker", BreakerPolicy), ("invalidation_guard", GuardPolicy)):
        try:
            policy(**dataclasses.asdict(getattr(settings, section)))
        except ValueError as exc:
            raise ConfigError(f"{source}: {section}: {exc}") from None


@dataclass(frozen=True)
class _Ctx:
    base_dir: Path
    source: str

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")


def _build(cls: type, data: Any, *, prefix: str, ctx: _Ctx) -> Any:
    where = prefix.rstrip(".") or "(top level)"
    if not isinstance(data, dict):
        raise ctx.error(where, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _INTERNAL_FIELDS}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ctx.error(f"{prefix}{unknown[0]}", f"unknown key (known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ctx.error(key, "required key is missing")
            continue
        values[name] = _convert(hints[name], data[name], key=key, ctx=ctx, field_name=name)
    return cls(**values)


def _convert(tp: Any, value: Any, *, key: str, ctx: _Ctx, field_name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key=key, ctx=ctx, field_name=field_name)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, prefix=f"{key}.", ctx=ctx)
    if origin is Literal:
        if value not in args:
            raise ctx.error(key, f"must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ctx.error(key, "expected a list")
        return tuple(_convert(args[0], v, key=f"{key}[{i}]", ctx=ctx, field_name="") for i, v in enumerate(value))
    if origin in (Mapping, dict):
        if not isinstance(value, dict):
            raise ctx.error(key, "expected a mapping")
        return {
            str(k): _convert(args[1], v, key=f"{key}.{k}", ctx=ctx, field_name="") for k, v in value.items()
        }
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ctx.error(key, "expected a file path")
        path = Path(value)
        path = path if path.is_absolute() else ctx.base_dir / path
        if field_name in _FILE_FIELDS and not path.is_file():
            raise ctx.error(key, f"file not found: {path}")
        return path
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(key, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(key, "expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.error(key, "expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(key, "expected a string")
        return value
    raise ctx.error(key, f"unsupported setting type {tp!r}")  # pragma: no cover - a bug in this module
