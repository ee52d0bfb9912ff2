"""The single broker stopped for 20 s mid-campaign: the workers survive and nothing is lost.

A test-owned single-node broker (`scripts/kafka/ctl` on free ports and its own state dir, never the shared
broker), `pushstream worker` as on one machine (the supervisor with its router, transactional and bulk sender
children), the fakes. The broker is stopped once 30% of the devices were pushed and started again 20 s later
on the same data dir. The children either kept their pids through the outage or were restarted by the
supervisor; the test reports which, and requires the supervisor itself to have stayed up.

The bound: requests in flight when the broker went away belong to a transaction that may not commit (when the
outage, with the broker's stop and start, outlasts the senders' 60 s transaction deadline, the bulk sender
process exits and the supervisor restarts it); those batches are sent again after the outage: ≤ one bulk
batch of ≤ 500 devices per platform per transaction that failed, the one in progress and at most the next
(the sender stops polling while it cannot commit), so ≤ 2 x 500 x 2.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import free_port
from tests.integration.crash import PROVIDERS, campaign_registrations, register
from tests.integration.faults import LocalKafka, Step, campaign_with_faults
from tests.integration.harness import Kafka, RoleProcess, make_stack, wait_for

USERS = 3000  # two devices each
OUTAGE = 20.0  # seconds
REPEAT_BOUND = 2 * 500 * len(PROVIDERS)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = LocalKafka(tmp_path_factory.mktemp("broker") / "kafka", brokers=1).start()
    try:
        yield kafka
    finally:
        kafka.reset()


def child_pids(log: str) -> dict[str, list[int]]:
    """Role → the pids the supervisor started for it, in order (the first start, then each restart)."""
    pids: dict[str, list[int]] = {}
    for role, pid in re.findall(r"(?:started|restarted) (\S+) \(pid (\d+)", log):
        pids.setdefault(role, []).append(int(pid))
    return pids


async def test_single_broker_stopped_for_20_seconds(tmp_path: Path, fakes: FakesProcess, broker: LocalKafka,
                                                    processes: list[Any]) -> None:
    stack = make_stack(tmp_path / "d", fakes, broker=broker.bootstrap)
    d = stack.deployment
    port = free_port()
    machine = RoleProcess(d, "machine", ["--datadir", str(d.root / "data"), "--web-host", "127.0.0.1",
                                         "--web-port", str(port)], port)
    processes.append(machine.start())
    for p in (port, port + 1, port + 2):  # the router, the transactional and the bulk sender
        machine.wait_ready(port=p, timeout=150)
    devices = {e["device_id"] for e in campaign_registrations(USERS)}

    def outage() -> set[int]:
        broker.stop()
        end = time.monotonic() + OUTAGE
        while time.monotonic() < end:  # the outage's length, watching the supervisor through it
            assert machine.alive(), f"the supervisor died with the broker:\n{machine.log_tail()}"
            time.sleep(0.5)
        broker.start()
        return set()

    async with Kafka(d) as kafka:
        await register(stack, kafka, [machine], USERS)  # type: ignore[list-item]
        before = child_pids(machine.log_path.read_text())
        assert set(before) == {"router", "sender-transactional", "sender-bulk"}, before
        # Answers held back a little, so the campaign is still running when the broker goes away.
        stack.fakes.set_latency(0.2)
        outcome = await campaign_with_faults(stack, kafka, [Step(0.3, f"broker stopped {OUTAGE:.0f}s", outage)],
                                             notification_id="sale-outage", devices=devices, timeout=240)
    after = child_pids(machine.log_path.read_text())
    restarted = {role: pids[len(before.get(role, [])):] for role, pids in after.items()
                 if len(pids) > len(before.get(role, []))}
    print(outcome.summary())
    print(f"children restarted by the supervisor during the outage: {restarted or 'none (same pids)'}")
    assert machine.alive(), machine.log_tail()
    for p in (port, port + 1, port + 2):
        wait_for(partial(machine.ready, port=p), timeout=60, what=f"child on :{p} ready after the outage")
    assert outcome.pushed_at_steps[0] < len(devices), outcome.summary()
    assert outcome.lost == 0 and outcome.missing_at_fakes == 0, outcome.summary()
    assert outcome.multiple_finals == 0, outcome.summary()
    assert outcome.statuses == {"delivered": len(devices)}, outcome.summary()
    assert outcome.duplicated <= REPEAT_BOUND, outcome.summary()
