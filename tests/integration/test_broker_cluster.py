"""One of three brokers SIGKILLed mid-campaign and restarted: nothing lost, nothing repeated beyond the bound.

A test-owned 3-node KRaft cluster (`scripts/kafka/ctl start --brokers 3` on free ports: replication factor 3,
min.insync.replicas=2, also for the offsets and transaction logs), a deployment with replication factor 3, a
router and a bulk sender process, the fakes. The node killed is the one leading the most partitions of the
delivery topics the sender reads, so the kill moves leaders under the sender's open transaction.

The bound: a sender whose transaction cannot commit aborts it and sends its batch again, ≤ one bulk batch
(bulk_sender_batches=1) of ≤ delivery_chunk=500 devices per platform per failed transaction; the kill is one
fault, but a leader move can fail the transaction in progress and the one after, so ≤ 2 x 500 x 2.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import free_port
from tests.integration.crash import PROVIDERS, campaign_registrations, register
from tests.integration.faults import LocalKafka, Step, campaign_with_faults
from tests.integration.harness import Kafka, RoleProcess, make_stack

USERS = 3000  # two devices each
REPEAT_BOUND = 2 * 500 * len(PROVIDERS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = LocalKafka(tmp_path_factory.mktemp("cluster") / "kafka", brokers=3).start()
    try:
        yield kafka
    finally:
        kafka.reset()


async def describe(bootstrap: str, topics: list[str]) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.describe_topics(topics))
    finally:
        await admin.close()


def busiest_leader(described: list[dict[str, Any]]) -> int:
    """The node that leads the most partitions of the described topics."""
    leaders: Counter[int] = Counter(p["leader"] for t in described for p in t["partitions"])
    return leaders.most_common(1)[0][0]


async def test_one_of_three_brokers_killed_and_restarted(tmp_path: Path, fakes: FakesProcess, cluster: LocalKafka,
                                                         processes: list[Any]) -> None:
    stack = make_stack(tmp_path / "d", fakes, broker=cluster.bootstrap, replication_factor=3)
    d = stack.deployment
    router_port, sender_port = free_port(), free_port()
    router = RoleProcess(d, "router", ["--role", "router", "--datadir", str(d.root / "data-router"),
                                       "--web-host", "127.0.0.1", "--web-port", str(router_port)], router_port)
    sender = RoleProcess(d, "bulk-1", ["--role", "sender", "--lane", "bulk", "--web-port", str(sender_port)],
                         sender_port)
    for process in (router, sender):
        processes.append(process.start())
    for process in (router, sender):
        process.wait_ready(timeout=150)
    devices = {e["device_id"] for e in campaign_registrations(USERS)}
    deliveries = await describe(cluster.bootstrap, [d.topic(f"pushstream.deliveries.{p}.bulk") for p in PROVIDERS])
    node = busiest_leader(deliveries)
    # Three replicas everywhere: pushstream's topics, the consumer offsets and the transaction log.
    internal = await describe(cluster.bootstrap, ["__consumer_offsets", "__transaction_state"])
    assert {len(p["replicas"]) for t in deliveries + internal for p in t["partitions"]} == {3}, internal

    def kill() -> set[int]:
        cluster.kill_broker(node)
        return set()

    def restart() -> set[int]:
        cluster.start_broker(node)
        return set()

    async with Kafka(d) as kafka:
        await register(stack, kafka, [router], USERS)  # type: ignore[list-item]
        outcome = await campaign_with_faults(
            stack, kafka,
            [Step(0.25, f"kill broker {node}", kill), Step(0.6, f"restart broker {node}", restart, within=20)],
            notification_id="sale-broker", devices=devices, timeout=240)
    print(outcome.summary())
    assert router.alive() and sender.alive(), "a role process died with the broker"
    assert outcome.lost == 0 and outcome.missing_at_fakes == 0, outcome.summary()
    assert outcome.multiple_finals == 0, outcome.summary()
    assert outcome.statuses == {"delivered": len(devices)}, outcome.summary()
    assert outcome.duplicated <= REPEAT_BOUND, outcome.summary()
