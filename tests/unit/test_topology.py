"""topics.yaml: parsing, defaults, co-partition checks, and where the file is found (no Kafka here)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

import pushstream.topology as topology
from pushstream.config import ConfigError, KafkaSettings, Settings
from pushstream.topology import TopicSpec, kafka_bootstrap, load_layout, topics_file_path

REPO_TOPICS = Path(topology.__file__).resolve().parents[1] / "topics.yaml"
INPUT_TOPICS = ("pushstream.devices", "pushstream.preferences", "pushstream.notifications",
                "pushstream.engagement")
OUTPUT_TOPICS = ("pushstream.status", "pushstream.dlq", "pushstream.audit")


def write_layout(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def layout_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_layout(write_layout(tmp_path, text))
    return str(excinfo.value)


# --- the shipped layout ---------------------------------------------------------------------------


def test_shipped_layout_has_the_contract_topics() -> None:
    layout = load_layout(REPO_TOPICS)
    for name in INPUT_TOPICS + OUTPUT_TOPICS:
        assert name in layout.topics, name


def test_shipped_layout_copartitions_everything_read_with_the_user_tables() -> None:
    layout = load_layout(REPO_TOPICS)
    copartitioned = {name for name, spec in layout.topics.items() if spec.copartitioned}

    assert {
        "pushstream.user-events",
        "pushstream.intents",
        "pushstream-devices-changelog",
        "pushstream-preferences-changelog",
        "pushstream-user_state-changelog",
        "pushstream.progress",
        "pushstream.dlq-counts",
        "pushstream-progress-changelog",
        "pushstream-dlq_counts-changelog",
        "pushstream-cancelled-changelog",
    } <= copartitioned
    assert all(layout.partitions(name) == layout.user_partitions for name in copartitioned)


def test_shipped_layout_compacts_the_table_changelogs() -> None:
    layout = load_layout(REPO_TOPICS)
    changelogs = [spec for name, spec in layout.topics.items() if name.endswith("-changelog")]
    assert changelogs
    assert all(spec.cleanup_policy == "compact" and spec.retention_ms is None for spec in changelogs)


def test_shipped_layout_has_a_delivery_topic_per_platform_and_lane() -> None:
    layout = load_layout(REPO_TOPICS)
    for platform in ("apns", "fcm", "webpush"):
        assert f"pushstream.deliveries.{platform}" in layout.topics
        assert f"pushstream.deliveries.{platform}.bulk" in layout.topics


# --- parsing and defaults -------------------------------------------------------------------------


def test_defaults_apply_to_an_almost_empty_layout(tmp_path: Path) -> None:
    layout = load_layout(write_layout(tmp_path, "topics:\n  a: {}\n  b:\n"))

    assert (layout.user_partitions, layout.replication_factor) == (12, 1)
    assert layout.spec("a") == TopicSpec(
        name="a",
        partitions=12,
        replication_factor=1,
        cleanup_policy="delete",
        retention_ms=None,
        copartitioned=False,
    )
    assert layout.spec("b") == dataclasses.replace(layout.spec("a"), name="b")


def test_an_empty_file_is_an_empty_layout(tmp_path: Path) -> None:
    layout = load_layout(write_layout(tmp_path, ""))
    assert layout.topics == {}
    assert layout.user_partitions == 12


def test_topics_inherit_user_partitions_and_replication(tmp_path: Path) -> None:
    layout = load_layout(
        write_layout(
            tmp_path,
            """\
        user_partitions: 6
        replication_factor: 3
        topics:
          inherits: {}
          own: {partitions: 2, replication_factor: 2}
          joined: {copartitioned: true}
        """,
        )
    )

    assert (layout.partitions("inherits"), layout.spec("inherits").replication_factor) == (6, 3)
    assert (layout.partitions("own"), layout.spec("own").replication_factor) == (2, 2)
    assert layout.partitions("joined") == 6 and layout.spec("joined").copartitioned


def test_unknown_topic_lookup_raises_key_error(tmp_path: Path) -> None:
    layout = load_layout(write_layout(tmp_path, "topics: {a: {}}\n"))
    with pytest.raises(KeyError):
        layout.partitions("b")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (TopicSpec("t", 1, 1, "delete", None, False), {"cleanup.policy": "delete"}),
        (TopicSpec("t", 1, 1, "compact", None, True), {"cleanup.policy": "compact"}),
        (
            TopicSpec("t", 1, 1, "compact,delete", 604800000, False),
            {"cleanup.policy": "compact,delete", "retention.ms": "604800000"},
        ),
        (TopicSpec("t", 1, 1, "delete", 0, False), {"cleanup.policy": "delete", "retention.ms": "0"}),
    ],
)
def test_kafka_config_holds_policy_and_retention_as_strings(
    spec: TopicSpec, expected: dict[str, str]
) -> None:
    assert spec.kafka_config() == expected


@pytest.mark.parametrize("policy", ["delete", "compact", "compact,delete"])
def test_valid_cleanup_policies_are_accepted(tmp_path: Path, policy: str) -> None:
    layout = load_layout(write_layout(tmp_path, f"topics: {{t: {{cleanup_policy: '{policy}'}}}}\n"))
    assert layout.spec("t").cleanup_policy == policy


# --- co-partitioning ------------------------------------------------------------------------------


def test_copartitioned_topic_with_another_partition_count_is_refused(tmp_path: Path) -> None:
    message = layout_error(
        tmp_path,
        """\
        user_partitions: 12
        topics:
          pushstream.intents: {copartitioned: true, partitions: 6}
        """,
    )
    assert "topics.pushstream.intents" in message
    assert "need 12 partitions, not 6" in message


def test_copartitioned_topic_with_the_user_partition_count_is_fine(tmp_path: Path) -> None:
    layout = load_layout(
        write_layout(tmp_path, "user_partitions: 4\ntopics: {t: {copartitioned: true, partitions: 4}}\n")
    )
    assert layout.partitions("t") == 4


def test_topic_not_copartitioned_may_have_any_partition_count(tmp_path: Path) -> None:
    layout = load_layout(write_layout(tmp_path, "user_partitions: 12\ntopics: {dlq: {partitions: 3}}\n"))
    assert layout.partitions("dlq") == 3


# --- invalid layouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("user_partition: 12\n", "unknown key 'user_partition'"),
        ("topics: {t: {partition: 3}}\n", "topics.t: unknown key 'partition'"),
        (
            "topics: {t: {cleanup_policy: forever}}\n",
            "topics.t: cleanup_policy 'forever' is not delete/compact",
        ),
        ("- a\n", "top level must be a mapping"),
        ("topics: [a, b]\n", "topics: expected a mapping"),
        ("topics: {t: 12}\n", "topics.t: expected a mapping"),
        ("user_partitions: many\n", "user_partitions: expected an integer of at least 1"),
        ("user_partitions: 0\n", "user_partitions: expected an integer of at least 1"),
        ("replication_factor: 0\n", "replication_factor: expected an integer of at least 1"),
        ("topics: {t: {partitions: -1}}\n", "topics.t.partitions: expected an integer of at least 1"),
        ("topics: {t: {partitions: true}}\n", "topics.t.partitions: expected an integer"),
        ("topics: {t: {partitions: 2.5}}\n", "topics.t.partitions: expected an integer"),
        ("topics: {t: {replication_factor: x}}\n", "topics.t.replication_factor: expected an integer"),
        ("topics: {t: {retention_ms: week}}\n", "topics.t.retention_ms: expected an integer"),
        ("topics: {t: [unclosed\n", "cannot read the topic layout"),
    ],
)
def test_invalid_layouts_are_config_errors_naming_the_problem(
    tmp_path: Path, text: str, fragment: str
) -> None:
    message = layout_error(tmp_path, text)
    assert fragment in message
    assert str(tmp_path / "topics.yaml") in message


def test_retention_minus_one_means_forever_and_is_accepted(tmp_path: Path) -> None:
    layout = load_layout(write_layout(tmp_path, "topics: {t: {retention_ms: -1}}\n"))
    assert layout.spec("t").kafka_config()["retention.ms"] == "-1"


def test_missing_layout_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="topics file not found"):
        load_layout(tmp_path / "absent.yaml")


# --- locating the file and the bootstrap string ---------------------------------------------------


def test_configured_absolute_topics_file_is_used_as_is(tmp_path: Path) -> None:
    settings = Settings(kafka=KafkaSettings(topics_file="/etc/pushstream/topics.yaml"), base_dir=tmp_path)
    assert topics_file_path(settings) == Path("/etc/pushstream/topics.yaml")


def test_configured_relative_topics_file_resolves_against_the_config_directory(tmp_path: Path) -> None:
    settings = Settings(kafka=KafkaSettings(topics_file="conf/topics.yaml"), base_dir=tmp_path)
    assert topics_file_path(settings) == tmp_path / "conf/topics.yaml"


def test_topics_file_in_the_working_directory_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_layout(tmp_path, "topics: {}\n")
    monkeypatch.chdir(tmp_path)
    assert topics_file_path(Settings()) == tmp_path / "topics.yaml"


def test_shipped_topics_file_is_the_last_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert topics_file_path(Settings()) == REPO_TOPICS


@pytest.mark.parametrize(
    ("broker", "expected"),
    [
        ("kafka://127.0.0.1:9092", "127.0.0.1:9092"),
        ("kafka://a:9092;kafka://b:9093", "a:9092,b:9093"),
        ("kafka://a:9092,kafka://b:9093", "a:9092,b:9093"),
        ("a:9092", "a:9092"),
    ],
)
def test_kafka_bootstrap_turns_faust_urls_into_host_ports(broker: str, expected: str) -> None:
    assert kafka_bootstrap(broker) == expected


def test_shipped_layout_has_a_retry_topic_per_platform_lane_and_delay_band() -> None:
    from pushstream.agents.senders import retry_topic
    from pushstream.models.vocabulary import LANES, PLATFORMS
    from pushstream.rules.retry import RETRY_BANDS

    layout = load_layout(REPO_TOPICS)
    wanted = {retry_topic(p, lane, band) for p in PLATFORMS for lane in LANES for band in RETRY_BANDS}
    retries = {name for name in layout.topics if name.startswith("pushstream.retry.")}
    assert retries == wanted
    assert len(wanted) == 3 * 2 * 5
    assert "pushstream.retry.fcm" in wanted and "pushstream.retry.fcm.bulk.60s" in wanted
