"""Registry: the only writer of the devices and preferences tables, and of token ownership.

Each user-events record is a batch for the partition it arrived on, so table writes land on the right
changelog partition. Within a batch, each user's maps are read once and written once.
"""

from __future__ import annotations

from typing import Any

from faust.types import EventT, StreamT

from pushstream import metrics
from pushstream.agents.io import Context
from pushstream.models import TokenClaims, UserEvents, decode
from pushstream.rules import registry as rules
from pushstream.rules.keys import user_key
from pushstream.tables.batch import BatchView, LocalTable


def apply_user_events(events: list[dict[str, Any]], device_view: BatchView,
                      pref_view: BatchView) -> list[dict[str, Any]]:
    """Apply registry events to the views; returns the token claims the registrations make."""
    claims: list[dict[str, Any]] = []
    for event in events:
        key = user_key(event["app_id"], event["user_id"])
        kind = event["kind"]
        if kind == "preference":
            pref_view.set(key, rules.merge_preferences(pref_view.get(key), event, event["at"]))
            continue
        current = device_view.get(key) or {}
        if kind == "device" and event["type"] == "register":
            updated, fingerprint = rules.register(current, event, event["at"])
            claims.append({"app_id": event["app_id"], "fingerprint": fingerprint, "user_id": event["user_id"],
                           "device_id": event["device_id"], "at": event["at"]})
        elif kind == "device":
            updated = rules.unregister(current, event["device_id"])
        elif kind in ("release", "deactivate"):
            changed = rules.deactivate(current, event["device_id"], event["fingerprint"], event["reason"],
                                       event["at"])
            if changed is None:
                continue
            updated = changed
        else:
            continue
        device_view.set(key, updated or None)
    return claims


def owner_changes(claims: list[dict[str, Any]], owners: BatchView) -> list[dict[str, Any]]:
    """Record each claim; return release events for the previous holder of a token that moved."""
    releases = []
    for claim in claims:
        key = f"{claim['app_id']}/{claim['fingerprint']}"
        previous = owners.get(key)
        holder = {"user_id": claim["user_id"], "device_id": claim["device_id"], "at": claim["at"]}
        if previous is not None and previous["at"] > claim["at"]:
            continue  # an older claim replayed late: the newer owner stays
        owners.set(key, holder)
        if previous is not None and (previous["user_id"], previous["device_id"]) != (
            claim["user_id"], claim["device_id"]
        ):
            releases.append({"kind": "release", "app_id": claim["app_id"], "user_id": previous["user_id"],
                             "device_id": previous["device_id"], "fingerprint": claim["fingerprint"],
                             "reason": "token_moved", "at": claim["at"]})
    return releases


def register(ctx: Context) -> None:
    tables = ctx.tables

    async def registry(stream: StreamT) -> None:
        async for event in stream.events():

            async def work(event: EventT = event) -> None:
                batch = decode(UserEvents, event.value)
                partition = event.message.partition
                device_view = BatchView(LocalTable(tables.devices, partition))
                pref_view, outbox = BatchView(LocalTable(tables.preferences, partition)), ctx.outbox()
                ctx.add_token_claims(outbox, apply_user_events(batch.events, device_view, pref_view))
                # No need to wait for the claims' acks: until the offset is committed (after Faust's producer
                # flush) a crash replays this batch, and replaying a registration claims the token again.
                await outbox.flush(wait=False)
                await device_view.write(ctx.app, event.message.partition)
                await pref_view.write(ctx.app, event.message.partition)

            with metrics.batch_seconds.labels("registry").time():
                await ctx.guarded("registry", [event], work)

    async def token_ownership(stream: StreamT) -> None:
        async for event in stream.events():

            async def work(event: EventT = event) -> None:
                batch = decode(TokenClaims, event.value)
                local = LocalTable(tables.token_owners, event.message.partition)
                owners, outbox = BatchView(local), ctx.outbox()
                ctx.add_user_events(outbox, owner_changes(batch.claims, owners))
                # Releases must be durable before the new owner is: a replay finds the new owner already
                # recorded and would not release the old device again.
                await outbox.flush()
                await owners.write(ctx.app, event.message.partition)

            await ctx.guarded("token_owners", [event], work)

    ctx.app.agent(ctx.topics.user_events, name="pushstream.registry")(registry)
    ctx.app.agent(ctx.topics.token_claims, name="pushstream.token_owners")(token_ownership)
