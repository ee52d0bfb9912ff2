"""Router: per partition, look up each targeted user's devices and preferences locally, apply the rules,
and write delivery batches per platform and lane plus the status of every device that gets no delivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from types import MappingProxyType
from typing import Any

import faust
import orjson
from faust.types import EventT, StreamT, TableT

from pushstream import logs, metrics
from pushstream.agents.io import Context, Outbox
from pushstream.agents.localtime import schedule_by_zone
from pushstream.hooks.runner import AdjustedRenders, apply_pre_send
from pushstream.models import IntentBatch, decode
from pushstream.models.base import iso
from pushstream.models.notifications import lane_of
from pushstream.providers import build_payload
from pushstream.providers.apns.payload import MAX_PAYLOAD_BYTES as APNS_MAX
from pushstream.providers.fcm.payload import MAX_MESSAGE_BYTES as FCM_MAX
from pushstream.providers.webpush.payload import MAX_PLAINTEXT_BYTES as WEBPUSH_MAX
from pushstream.rules.cancel import cancel_entry, cancel_key, is_cancelled
from pushstream.rules.fanout import fan_out_user
from pushstream.rules.keys import user_key
from pushstream.rules.localization import localize, render_key
from pushstream.rules.localtime import pending_local_time
from pushstream.rules.preferences import merge_memory
from pushstream.rules.routeplan import RoutePlan, delivery_batches
from pushstream.rules.variants import VariantPicker, variant_notification
from pushstream.tables import partition_items, table_key
from pushstream.tables.batch import BatchView, LocalTable, MergingView, write_partition

log = logging.getLogger(__name__)
PAYLOAD_LIMITS = {"apns": APNS_MAX, "fcm": FCM_MAX, "webpush": WEBPUSH_MAX}
# FCM counts the whole message, token included: room for a long registration token and its key.
FCM_TOKEN_ALLOWANCE = len(orjson.dumps({"token": "x" * 200}))
# A broadcast is routed in steps of `pipeline.broadcast_step_users` (500), yielding to the other agents between them.
# Users routed between two yields to the event loop within a step: a step of 500 users is ~50-100 ms of CPU,
# which a transactional intent waiting on the same loop would otherwise wait out whole.
USERS_PER_YIELD = 50

class PayloadCache:
    """Renders each (A/B variant, platform, localized text) of a notification once, however many devices share
    it: one cache per A/B variant (``variant``), each keyed by (platform, locale entry)."""

    def __init__(self, notification: dict[str, Any]) -> None:
        self.notification = notification
        self.view = MappingProxyType(notification)  # what hooks see: read-only
        self._cache: dict[tuple[str, str | None], dict[str, Any] | str] = {}
        variants = notification.get("variants")
        self.picker = VariantPicker(notification["id"], variants) if variants else None
        self._variants: dict[str, PayloadCache] = {}

    def variant(self, variant_id: str) -> PayloadCache:
        """The renderer of one A/B variant (rules.variants)."""
        cache = self._variants.get(variant_id)
        if cache is None:
            cache = self._variants[variant_id] = PayloadCache(variant_notification(self.notification, variant_id))
        return cache

    def __call__(self, platform: str, locale: str | None) -> dict[str, Any] | str:
        variant = render_key(self.notification, locale)
        cached = self._cache.get((platform, variant))
        if cached is None:
            n = self.notification
            title, body, _ = localize(n.get("title"), n.get("body"), n.get("localized"), locale)
            payload = build_payload(platform, n, title, body)
            size = len(orjson.dumps(payload)) + (FCM_TOKEN_ALLOWANCE if platform == "fcm" else 0)
            cached = payload if size <= PAYLOAD_LIMITS[platform] else "payload_too_large"
            self._cache[(platform, variant)] = cached
        return cached


def targeted_users(devices: TableT, intent: IntentBatch, partition: int, after: str | None = None
                   ) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(user_id, devices) of the intent's users on this partition: listed ones, or all for a broadcast
    (in key order, from just after the table key ``after``)."""
    app_id = intent.notification["app_id"]
    if intent.broadcast:
        prefix = f"{app_id}/"
        return ((k[len(prefix):], v) for k, v in partition_items(devices, partition, prefix, after))
    return ((u, devices.get(table_key(user_key(app_id, u)))) for u in intent.user_ids or ())


async def route_intent(ctx: Context, intent: IntentBatch, partition: int, outbox: Outbox, states: BatchView,
                       now: dt.datetime, users: Iterable[tuple[str, dict[str, Any] | None]] | None = None,
                       render: PayloadCache | None = None, batch_prefix: str | None = None,
                       source: tuple[str, int | None, int | None] | None = None, cancelled: bool = False) -> None:
    """Route ``users`` (default: all the intent targets on this partition) into the outbox and states.
    ``source`` (topic, partition, offset of the intent) goes into the dead letters of undeliverable devices.
    ``cancelled``: the notification was cancelled, its devices are suppressed (rules.cancel)."""
    notification = intent.notification
    settings, topics = ctx.rt.settings, ctx.topics
    preferences = LocalTable(ctx.tables.preferences, partition)
    app_id, nid = notification["app_id"], notification["id"]
    app_settings = settings.app(app_id)
    default_zone = app_settings.default_zone if app_settings is not None else dt.UTC
    lane = lane_of(notification["channel"])
    render = render or PayloadCache(notification)
    prefix = batch_prefix or f"{intent.origin or nid}/{partition}"

    def configured(platform: str) -> bool:
        return app_settings is not None and app_settings.platform_configured(platform)

    if users is None:
        users = targeted_users(ctx.tables.devices, intent, partition)
    if pending_local_time(notification):  # send_at_local: scheduled per zone now, fanned out at each zone's time
        schedule_by_zone(ctx, intent, partition, outbox, now, users, prefix)
        return
    hooks = ctx.rt.hooks.get(app_id)
    if hooks is not None and hooks.pre_send is None:
        hooks = None  # no pre-send hook: the loop below pays nothing for hooks
    adjusted = AdjustedRenders(notification, PayloadCache) if hooks is not None else None
    plan = RoutePlan(notification, at=iso(now), origin=intent.origin)
    only = intent.devices
    for n_user, (user_id, user_devices) in enumerate(users, 1):
        if n_user % USERS_PER_YIELD == 0:
            await asyncio.sleep(0)
        if not user_devices:
            continue
        key = user_key(app_id, user_id)
        variant = None if render.picker is None else render.picker.pick(user_id)
        prefs = preferences.get(table_key(key))
        result = fan_out_user(
            notification, app_id, user_id, user_devices, prefs, states.get(key), now,
            configured=configured,
            render=render if variant is None else render.variant(variant),
            origin=intent.origin,
            only_devices=only.get(user_id) if only is not None else None,
            default_zone=default_zone,
            cancelled=cancelled,
        )
        if hooks is not None and result.deliveries:
            assert adjusted is not None
            await apply_pre_send(app_id, hooks, render.view, user_id, prefs, user_devices, result, adjusted)
        plan.add(user_id, variant, result, user_devices)
        if result.state is not None:
            states.set(key, result.state)
    for status in plan.statuses:
        outbox.add(topics.status_out, status, key=status.user_id)
    if plan.undeliverable:
        for letter in plan.dead_letters(source or (topics.intents[lane].get_topic_name(), partition, None)):
            outbox.add(topics.dlq, letter, key=letter.key)
    for user, command in plan.schedules:
        outbox.add(topics.schedule, command, key=user, partition=partition)
    metrics.count_statuses(plan.tally)
    ctx.add_progress(outbox, plan.progress)
    for (platform, _), items in plan.batches.items():
        metrics.deliveries_planned.labels(platform, lane).inc(len(items))
    for batch in delivery_batches(notification, plan.batches, prefix=prefix, chunk=settings.pipeline.delivery_chunk):
        to = topics.deliveries[(batch.platform, lane)]
        outbox.add(to, batch, key=f"{app_id}/{nid}", partition=partition % (to.partitions or 1))


def owns(app: faust.App, event: EventT) -> bool:
    """Whether this worker may go on routing the event's partition. Faust sets ``rebalancing`` before it
    revokes anything (and drops the partitions' RocksDB handles), so a step never starts during a rebalance."""
    assignor = app.assignor
    return not app.rebalancing and assignor is not None and event.message.tp in assignor.assigned_actives()


async def still_owns(app: faust.App, event: EventT, generation: int, *, timeout: float = 60.0) -> bool:
    """Whether routing may go on after ``owns`` said no: wait for the rebalance to end, then yes if it was
    the one this event was fetched in and the partition is still ours.

    Faust resumes the streams *before* it clears ``rebalancing``, so the first intents after an assignment
    can see the flag of the very rebalance that assigned them. Abandoned, such an intent would wait for the
    next rebalance, which with static membership may never come (a restarted worker's broadcast never
    routed). An intent fetched before a later rebalance is abandoned: Faust seeks to the committed offset
    after it, so the partition's owner fetches the intent again.
    """
    deadline = time.monotonic() + timeout
    while app.rebalancing:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return app.consumer_generation_id == generation and owns(app, event)


def abandon(app: faust.App, event: EventT) -> None:
    """Leave the event unfinished: mark it so Faust never counts its offset as done on this worker (a late ack
    of a revoked partition would otherwise survive into the next assignment); it is fetched again from the
    committed offset by whoever owns the partition next, and resumes at the cursor."""
    message: Any = event.message
    message.acked = True
    consumer: Any = app.consumer
    unacked = getattr(consumer, "_unacked_messages", None)
    if unacked is not None:
        unacked.discard(message)


async def route_event(ctx: Context, event: EventT) -> None:
    """Route one intent, `pipeline.broadcast_step_users` users at a time.

    Each step's deliveries and statuses are acked before the users' memory (and, for a broadcast, the
    partition's cursor) records it, so a crash repeats at most the step in progress, and that step is routed
    again into batches with the same ids, which the senders never send twice. A broadcast resumes at its
    cursor after a crash or a rebalance. When a rebalance starts mid-way the step loop stops without
    writing: the partition's owner continues from the cursor (this event's offset was never committed).
    """
    app, tables = ctx.app, ctx.tables
    generation = app.consumer_generation_id  # the rebalance this event was fetched after
    intent = decode(IntentBatch, event.value)
    message = event.message
    partition = message.partition
    if intent.cancel:
        await remember_cancel(ctx, intent, partition)
        return
    origin = intent.origin or f"{message.topic}:{partition}:{message.offset}"
    render = PayloadCache(intent.notification)
    cursor_key = table_key(f"{origin}|{partition}")
    cursor = (tables.cursors.get(cursor_key) if intent.broadcast else None) or {
        "step": 0, "after": None, "done": False}
    if cursor["done"]:
        return  # routed completely before a crash: the replayed intent has nothing left to do
    step_no, after = cursor["step"], cursor["after"]
    listed = None if intent.broadcast else iter(targeted_users(tables.devices, intent, partition))
    app_id = intent.notification["app_id"]
    step_users = max(1, ctx.rt.settings.pipeline.broadcast_step_users)
    logs.bind(app_id=app_id, notification_id=intent.notification.get("id"))
    while True:
        if not owns(app, event) and not await still_owns(app, event, generation):
            log.info("router: rebalance while routing %s on partition %d: left for the owner to resume",
                     origin, partition)
            abandon(app, event)
            return
        # A fresh iterator per step: the RocksDB of a partition can be closed while this coroutine waits.
        source = targeted_users(tables.devices, intent, partition, after) if listed is None else listed
        step = list(itertools.islice(source, step_users))
        if not step:
            break
        # Merged on write: the other lane may write the same users while this step awaits.
        states, outbox = MergingView(LocalTable(tables.user_state, partition), merge_memory), ctx.outbox()
        await route_intent(ctx, intent, partition, outbox, states, dt.datetime.now(dt.UTC), users=step,
                           render=render, batch_prefix=f"{origin}/{partition}/{step_no}",
                           source=(message.topic, partition, message.offset),
                           cancelled=cancelled_now(ctx, intent))
        await outbox.flush()
        if not owns(app, event) and not await still_owns(app, event, generation):
            log.info("router: rebalance after step %d of %s on partition %d", step_no, origin, partition)
            abandon(app, event)
            return
        await states.write(app, partition)
        step_no += 1
        after = user_key(app_id, step[-1][0])
        if intent.broadcast:
            await write_partition(app, tables.cursors, partition,
                                  {cursor_key: {"step": step_no, "after": after, "done": False}})
    if intent.broadcast:
        await write_partition(app, tables.cursors, partition, {cursor_key: {"step": step_no, "after": after,
                                                                            "done": True}})


class Watchdog:
    """Finds intents Faust fetched but never handed to the router, and fetches them again.

    Faust's fetch loop marks a record read before the agent has it, and drops it when the flow is suspended
    around a rebalance: the partition's position moves past an intent the router never started, and only a
    later rebalance (seeking back to the committed offset) would fetch it again; with static membership that
    may never come (seen after a worker restart: its share of a broadcast was never routed). Routing is
    idempotent (cursors, batch ids, the users' memory), so fetching an intent again is safe; the check only
    fires on a lane that has been idle a while, where nothing can be waiting in its queue.
    """

    IDLE_SECONDS = 10.0

    def __init__(self) -> None:
        self.seen: dict[Any, int] = {}  # partition → highest offset the router started
        self.busy: dict[str, int] = {}
        self.idle_since: dict[str, float] = {}

    def started(self, lane: str, event: EventT) -> None:
        message = event.message
        self.seen[message.tp] = message.offset
        self.busy[lane] = self.busy.get(lane, 0) + 1

    def finished(self, lane: str) -> None:
        self.busy[lane] -= 1
        if not self.busy[lane]:
            self.idle_since[lane] = time.monotonic()

    def idle(self, lane: str) -> bool:
        return (not self.busy.get(lane) and
                time.monotonic() - self.idle_since.setdefault(lane, time.monotonic()) > self.IDLE_SECONDS)

    @staticmethod
    def first_unstarted(seen: int | None, committed: int | None) -> int:
        """The first offset the router should still get: past what it started and what is committed."""
        return max(-1 if seen is None else seen, -1 if committed is None else committed - 1) + 1

    async def check(self, app: faust.App, topics: dict[str, faust.TopicT]) -> None:
        if app.rebalancing or app.assignor is None:
            return
        consumer: Any = app.consumer
        for lane, topic in topics.items():
            if not self.idle(lane):
                continue
            name = topic.get_topic_name()
            for tp in sorted(tp for tp in app.assignor.assigned_actives() if tp.topic == name):
                position = await consumer.position(tp)
                expected = self.first_unstarted(self.seen.get(tp), consumer._committed_offset.get(tp))
                if position is not None and position > expected and not app.rebalancing:
                    log.warning("router: %s:%d was read up to %d but the router never got offsets %d..%d; "
                                "fetching them again", name, tp.partition, position, expected, position - 1)
                    await consumer.seek(tp, expected)
def cancelled_now(ctx: Context, intent: IntentBatch) -> bool:
    """Whether the intent's notification is cancelled: looked up before every step, so a cancel that lands
    while a broadcast is routed stops it at the next step."""
    n = intent.notification
    entry = ctx.tables.cancelled.get(table_key(cancel_key(n["app_id"], n["id"])))
    return is_cancelled(entry)


async def remember_cancel(ctx: Context, intent: IntentBatch, partition: int) -> None:
    """A cancel reached this partition: remember it (one table write) for the steps and firings to come."""
    n = intent.notification
    log.info("router: notification %s/%s cancelled on partition %d", n["app_id"], n["id"], partition)
    await write_partition(ctx.app, ctx.tables.cancelled, partition,
                          {table_key(cancel_key(n["app_id"], n["id"])): cancel_entry(n["at"])})


def register(ctx: Context) -> None:
    """One router per lane: a campaign's broadcast intents never sit in front of a transactional one."""
    watchdog = Watchdog()
    for lane, source in ctx.topics.intents.items():
        name = "pushstream.router" + ("" if lane == "transactional" else "_bulk")

        async def router(stream: StreamT, name: str = name, lane: str = lane) -> None:
            async for event in stream.events():

                async def work(event: EventT = event) -> None:
                    try:
                        await route_event(ctx, event)
                    except Exception:
                        if owns(ctx.app, event):
                            raise  # a real error: guarded dead-letters the intent
                        # Failed because the partition went away mid-step (its RocksDB handle was dropped):
                        # not an error of the intent; the partition's owner routes it.
                        log.warning("router: step of partition %d failed during a rebalance; left to its owner",
                                    event.message.partition, exc_info=True)
                        abandon(ctx.app, event)

                watchdog.started(lane, event)
                try:
                    with metrics.batch_seconds.labels(name).time():
                        await ctx.guarded(name, [event], work)
                finally:
                    watchdog.finished(lane)

        ctx.app.agent(source, name=name)(router)

    async def watch() -> None:
        await watchdog.check(ctx.app, ctx.topics.intents)

    ctx.app.timer(interval=5.0)(watch)
