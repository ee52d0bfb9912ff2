"""The topic layout (topics.yaml) and `pushstream topics apply`: create what is missing, report drift."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pushstream.config import ConfigError, Settings

DEFAULT_TOPICS_FILE = "topics.yaml"
_TOPIC_KEYS = {"partitions", "copartitioned", "cleanup_policy", "retention_ms", "replication_factor"}


@dataclass(frozen=True)
class TopicSpec:
    name: str  # logical name, without the prefix
    partitions: int
    replication_factor: int
    cleanup_policy: str
    retention_ms: int | None
    copartitioned: bool

    def kafka_config(self) -> dict[str, str]:
        config = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


@dataclass(frozen=True)
class TopicLayout:
    user_partitions: int
    replication_factor: int
    topics: dict[str, TopicSpec]

    def spec(self, name: str) -> TopicSpec:
        return self.topics[name]

    def partitions(self, name: str) -> int:
        return self.topics[name].partitions


def topics_file_path(settings: Settings) -> Path:
    """The configured topics file, else ./topics.yaml, else the one shipped beside the package."""
    if settings.kafka.topics_file:
        path = Path(settings.kafka.topics_file)
        return path if path.is_absolute() else settings.base_dir / path
    for candidate in (Path.cwd() / DEFAULT_TOPICS_FILE, Path(__file__).resolve().parents[1] / DEFAULT_TOPICS_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError("topics.yaml not found: set kafka.topics_file in pushstream.yaml")


def load_layout(path: Path) -> TopicLayout:
    """Parse and check topics.yaml."""
    if not path.is_file():
        raise ConfigError(f"topics file not found: {path}")
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the topic layout: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    unknown = set(raw) - {"user_partitions", "replication_factor", "topics"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown, key=str)[0]!r}")
    user_partitions = _positive_int(raw.get("user_partitions", 12), path, "user_partitions")
    replication = _positive_int(raw.get("replication_factor", 1), path, "replication_factor")
    topics_raw = raw.get("topics") or {}
    if not isinstance(topics_raw, dict):
        raise ConfigError(f"{path}: topics: expected a mapping of topic names to specs")
    topics: dict[str, TopicSpec] = {}
    for name, spec in topics_raw.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: topics.{name}: expected a mapping")
        bad = set(spec) - _TOPIC_KEYS
        if bad:
            raise ConfigError(f"{path}: topics.{name}: unknown key {sorted(bad)[0]!r}")
        copartitioned = bool(spec.get("copartitioned", False))
        partitions = _positive_int(spec.get("partitions", user_partitions), path, f"topics.{name}.partitions")
        if copartitioned and partitions != user_partitions:
            raise ConfigError(
                f"{path}: topics.{name}: co-partitioned topics need {user_partitions} partitions, not {partitions}"
            )
        policy = str(spec.get("cleanup_policy", "delete"))
        if policy not in {"delete", "compact", "compact,delete"}:
            raise ConfigError(f"{path}: topics.{name}: cleanup_policy {policy!r} is not delete/compact")
        topics[name] = TopicSpec(
            name=name,
            partitions=partitions,
            replication_factor=_positive_int(
                spec.get("replication_factor", replication), path, f"topics.{name}.replication_factor"
            ),
            cleanup_policy=policy,
            retention_ms=_int(spec["retention_ms"], path, f"topics.{name}.retention_ms", minimum=-1)
            if "retention_ms" in spec
            else None,
            copartitioned=copartitioned,
        )
    return TopicLayout(user_partitions=user_partitions, replication_factor=replication, topics=topics)


def _int(value: Any, path: Path, key: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{path}: {key}: expected an integer of at least {minimum}, got {value!r}")
    return value


def _positive_int(value: Any, path: Path, key: str) -> int:
    return _int(value, path, key, minimum=1)


def kafka_bootstrap(broker: str) -> str:
    """Faust's `kafka://host:port[;kafka://host2:port]` as an aiokafka bootstrap string."""
    return ",".join(part.removeprefix("kafka://") for part in broker.replace(";", ",").split(","))


@dataclass(frozen=True)
class Drift:
    topic: str
    problem: str


async def apply_topics(
    settings: Settings, layout: TopicLayout, *, dry_run: bool = False
) -> tuple[list[str], list[Drift]]:
    """Create the missing topics; return (created, drift). Existing topics are never modified."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap(settings.kafka.broker), client_id="pushstream-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = {settings.topic(name): spec for name, spec in layout.topics.items()}
        missing = [name for name in wanted if name not in existing]
        if missing and not dry_run:
            await admin.create_topics(
                [
                    NewTopic(
                        name=name,
                        num_partitions=wanted[name].partitions,
                        replication_factor=wanted[name].replication_factor,
                        topic_configs=wanted[name].kafka_config(),
                    )
                    for name in missing
                ]
            )
        present = [name for name in wanted if name in existing]
        drift: list[Drift] = []
        if present:
            for meta in await admin.describe_topics(present):
                name = meta["topic"]
                have = len(meta["partitions"])
                if have != wanted[name].partitions:
                    drift.append(Drift(name, f"has {have} partitions, topics.yaml says {wanted[name].partitions}"))
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in present]
            )
            for response in responses:
                for resource in response.resources:
                    name = resource[3]
                    configs = {entry[0]: entry[1] for entry in resource[4]}
                    policy = configs.get("cleanup.policy")
                    if policy is not None and policy != wanted[name].cleanup_policy:
                        drift.append(
                            Drift(name, f"cleanup.policy is {policy}, topics.yaml says {wanted[name].cleanup_policy}")
                        )
        return missing, drift
    finally:
        await admin.close()
