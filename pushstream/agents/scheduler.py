"""Scheduler: intents that wait for `send_at` or for the end of a user's quiet hours.

The schedule table is keyed by due time, so each partition's earliest entries are its first RocksDB keys.
A timer on every worker looks at the partitions it owns and asks the scheduler agent to fire what is due;
the agent (the only table writer, as Faust requires) pops those entries and sends them to `intents`.
"""

from __future__ import annotations

import time
from typing import Any

from faust.types import EventT, StreamT

from pushstream.agents.io import Context
from pushstream.models import IntentBatch, ScheduleCommands, decode, encode
from pushstream.models.notifications import lane_of
from pushstream.tables import due_keys, schedule_key
from pushstream.tables.batch import write_partition

FIRE_LIMIT = 1000  # entries per partition per tick: bounds the work of one fire command
REFIRE_AFTER = 30.0  # seconds before the timer asks again for a key it asked to fire and did not see popped


def register(ctx: Context) -> None:
    app, schedule, topics = ctx.app, ctx.tables.schedule, ctx.topics
    # Keys asked to fire and not yet seen popped: the timer does not ask twice while the agent is busy.
    firing: dict[bytes, float] = {}

    async def scheduler(stream: StreamT) -> None:
        async for event in stream.events():

            async def work(event: EventT = event) -> None:
                outbox = ctx.outbox()
                partition = event.message.partition
                to_delete: list[bytes] = []
                added: dict[bytes, Any] = {}
                for command in decode(ScheduleCommands, event.value).commands:
                    if command["op"] == "add":
                        added[schedule_key(command["due"], command["id"])] = command["intent"]
                    elif command["op"] == "fire":
                        for hex_key in command["keys"]:
                            key = bytes.fromhex(hex_key)
                            intent = added.get(key) or schedule.get(key)
                            if intent is not None:
                                lane = lane_of(intent["notification"]["channel"])
                                outbox.add(topics.intents[lane], IntentBatch(**intent), key=key, partition=partition)
                                to_delete.append(key)
                # Batched table writes (pushstream.tables.batch): a campaign's quiet-hours deferrals are one
                # entry per user, too many for Faust's per-key path.
                await write_partition(app, schedule, partition, added)
                # The intents are durable before their entries go: a crash fires them again, and the router's
                # dedup (same origin) makes the second firing silent.
                await outbox.flush()
                await write_partition(app, schedule, partition, dict.fromkeys(to_delete))
                for key in to_delete:
                    firing.pop(key, None)

            await ctx.guarded("scheduler", [event], work)

    async def fire_due() -> None:
        """Ask the scheduler to fire the due entries of every schedule partition this worker owns."""
        now = time.time()
        name = schedule.changelog_topic.get_topic_name()
        owned = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == name)
        for partition in owned:
            keys = [k for k in due_keys(schedule, partition, now, FIRE_LIMIT)
                    if now - firing.get(k, 0.0) > REFIRE_AFTER]
            if not keys:
                continue
            for key in keys:
                firing[key] = now
            command = ScheduleCommands(commands=[{"op": "fire", "keys": [k.hex() for k in keys]}])
            await topics.schedule.send(key=b"fire", value=encode(command), partition=partition)

    app.agent(topics.schedule, name="pushstream.scheduler")(scheduler)
    app.timer(interval=1.0)(fire_due)
