"""`pushstream topics apply` against the real broker: creates what is missing, is idempotent, reports drift."""

from __future__ import annotations

from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import BROKER, make_deployment


async def test_apply_creates_is_idempotent_and_reports_drift(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "d", apply=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        # Someone created the status topic by hand with the wrong partition count and cleanup policy.
        await admin.create_topics([NewTopic(name=deployment.topic("pushstream.status"), num_partitions=1,
                                            replication_factor=1, topic_configs={"cleanup.policy": "compact"})])
        first = deployment.cli("topics", "apply", check=False)
        assert first.returncode == 1
        assert f"drift: {deployment.topic('pushstream.status')}: has 1 partitions, topics.yaml says 4" in first.stderr
        assert "cleanup.policy is compact, topics.yaml says delete" in first.stderr
        assert f"created {deployment.topic('pushstream.devices')}" in first.stdout
        topics = set(await admin.list_topics())
        assert deployment.topic("pushstream-devices-changelog") in topics
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(
            [deployment.topic("pushstream.devices"), deployment.topic("pushstream.dlq")])}
        assert described == {deployment.topic("pushstream.devices"): 4, deployment.topic("pushstream.dlq"): 4}

        second = deployment.cli("topics", "apply", check=False)
        assert second.returncode == 1 and "0 created, 2 drifted" in second.stdout
    finally:
        await admin.close()


def test_apply_without_drift_exits_zero(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "d")  # applies once
    again = deployment.cli("topics", "apply", check=False)
    assert again.returncode == 0, again.stderr
    assert "0 created, 0 drifted" in again.stdout
