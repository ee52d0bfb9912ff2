"""Repeated SIGKILLs of the router and of bulk sender processes during one campaign of 20,000 deliveries.

Real role processes (`pushstream worker --role router|sender`) on the shared broker, the fakes. Six kills at
moments drawn from a seeded RNG (three of the router, three of the bulk senders: one process for APNs, one for
FCM), each process restarted under the same name, identity and port right after its kill (without waiting
for it to be ready: a router restart takes tens of seconds on a loaded machine). The campaign must end with
every device holding exactly one final status and a request at the fakes.

The in-flight bound: a SIGKILLed sender repeats at most the batches of its open transaction, one bulk batch
(bulk_sender_batches=1) of ≤ delivery_chunk=500 devices of its one platform, so ≤ 3 x 500 for three sender
kills; a killed router repeats nothing (it routes the step in progress again under the same batch ids, which
the senders skip: architecture.md, "Crash safety"). Every repeat must be explained by a kill: the earlier request
came on a connection of a process that was SIGKILLed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import free_port
from tests.integration.crash import PROVIDERS, campaign_registrations, kill_process, register
from tests.integration.faults import Step, campaign_with_faults
from tests.integration.harness import Kafka, RoleProcess, make_stack

USERS = 10_000  # two devices each: 20,000 deliveries
SEED = 9
KILLS_EACH = 3
LATENCY = 0.1  # seconds per answer
REPEAT_BOUND = KILLS_EACH * 1 * 500  # each sender process serves one platform


def kill_and_restart(process: RoleProcess) -> Callable[[], set[int]]:
    """SIGKILL the process and start it again at once. The campaign goes on while it starts; the next kill may
    find it still starting (a crash loop), which is a moment like any other."""
    def act() -> set[int]:
        ports = kill_process(process.process, process.kill)
        process.start()
        return ports

    return act


async def test_router_and_senders_sigkilled_three_times_each(tmp_path: Path, fakes: FakesProcess,
                                                             processes: list[Any]) -> None:
    stack = make_stack(tmp_path / "d", fakes)
    d = stack.deployment
    router_port = free_port()
    router = RoleProcess(d, "router", ["--role", "router", "--datadir", str(d.root / "data-router"),
                                       "--web-host", "127.0.0.1", "--web-port", str(router_port)], router_port)
    # One bulk sender process per platform (operations.md: scale senders by splitting platforms).
    senders = [RoleProcess(d, f"bulk-{platform}", ["--role", "sender", "--lane", "bulk", "--platforms", platform,
                                                   "--web-port", str(port)], port)
               for platform, port in ((p, free_port()) for p in PROVIDERS)]
    for process in (router, *senders):
        processes.append(process.start())
    for process in (router, *senders):
        process.wait_ready(timeout=150)

    rng = random.Random(SEED)
    # Each sender process killed at least once; the order and the moments are the RNG's.
    victims = [router] * KILLS_EACH + senders + [rng.choice(senders) for _ in range(KILLS_EACH - len(senders))]
    rng.shuffle(victims)
    moments = sorted(rng.uniform(0.02, 0.8) for _ in victims)
    steps = [Step(at, f"kill {victim.name}", kill_and_restart(victim))
             for at, victim in zip(moments, victims, strict=True)]
    devices = {e["device_id"] for e in campaign_registrations(USERS)}

    async with Kafka(d) as kafka:
        await register(stack, kafka, [router], USERS)  # type: ignore[list-item]
        # Answers held back LATENCY: a sender kill finds a batch in flight (requests at the fakes, answers not
        # yet back), the repeat the bound is about.
        stack.fakes.set_latency(LATENCY)
        outcome = await campaign_with_faults(stack, kafka, steps, notification_id="sale-kills", devices=devices,
                                             timeout=300)
    for process in (router, *senders):
        process.wait_ready(timeout=150)  # each restarted process came up
    print(outcome.summary())
    # Every kill came mid-campaign: before the fakes had seen a request per device.
    assert len(outcome.pushed_at_steps) == 2 * KILLS_EACH, outcome.summary()
    assert max(outcome.pushed_at_steps) < len(devices), outcome.summary()
    assert outcome.lost == 0 and outcome.missing_at_fakes == 0, outcome.summary()
    assert outcome.multiple_finals == 0, outcome.summary()
    assert outcome.statuses == {"delivered": len(devices)}, outcome.summary()
    assert outcome.unexplained_duplicates == 0, outcome.summary()
    assert outcome.duplicated <= REPEAT_BOUND, outcome.summary()
