"""Calling the per-app hooks without letting them stop the pipeline.

`apply_pre_send` runs in the router after a user's fan-out, over the devices about to get the notification: a
hook that raises, answers nonsense or exceeds its budget turns that device into `dead_lettered`/`hook_error`
and counts `pushstream_hook_errors_total{app_id,hook="pre_send"}`; the other devices go on.

`PostSendQueue` is the sender's side: `offer` (one call per settled poll, O(batches)) puts the poll's outcomes
on a bounded queue; a task drains it into the app's `post_send`. A full queue drops (and counts) rather than
slowing the sender.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from pushstream import metrics
from pushstream.hooks import AppHooks
from pushstream.models.status import Status
from pushstream.rules.fanout import Renderer, UserFanOut
from pushstream.rules.hooks import ERROR, HOOK_ERROR, PreSend, interpret
from pushstream.rules.registry import public_device

log = logging.getLogger(__name__)
POST_SEND_QUEUE = 1000  # polls' outcomes waiting for a post_send hook, per sender service


class _Warnings:
    """Log the first few hook failures of a process and then every 1000th: a broken hook on a campaign would
    otherwise write a log line per device."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str, *args: Any) -> None:
        self.count += 1
        if self.count <= 10 or self.count % 1000 == 0:
            log.warning(message + " (hook failure %d of this process)", *args, self.count)


warn = _Warnings()


async def pre_send_verdict(app_id: str, hooks: AppHooks, notification: Mapping[str, Any],
                           user: Mapping[str, Any], device: Mapping[str, Any]) -> PreSend:
    """The hook's verdict for one device; `ERROR` (counted) when it raises, answers nonsense or is too slow."""
    fn = hooks.pre_send
    assert fn is not None
    try:
        if hooks.pre_send_async:
            answer = await asyncio.wait_for(fn(notification, user, device), hooks.budget_seconds)
        else:
            started = time.perf_counter()
            answer = fn(notification, user, device)
            took = time.perf_counter() - started
            if took > hooks.budget_seconds:
                raise TimeoutError(f"took {took * 1000:.1f} ms, the budget is {hooks.budget_seconds * 1000:.0f} ms")
        verdict = interpret(answer)
        if verdict is ERROR:
            raise TypeError(f"answered {type(answer).__name__}, not KEEP, drop(reason) or adjust(...)")
        return verdict
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        metrics.hook_errors.labels(app_id, "pre_send").inc()
        warn("app %s: pre_send hook failed for device %s: %r", app_id, device.get("device_id"), exc)
        return ERROR


class AdjustedRenders:
    """Payloads of adjusted notifications, rendered once per distinct adjustment (e.g. the same UTM data)."""

    def __init__(self, notification: dict[str, Any], renderer: Callable[[dict[str, Any]], Renderer]) -> None:
        self.notification, self.renderer = notification, renderer
        self._cache: dict[bytes, Renderer] = {}

    def __call__(self, changes: dict[str, Any]) -> Renderer:
        key = orjson.dumps(changes, option=orjson.OPT_SORT_KEYS)
        render = self._cache.get(key)
        if render is None:
            render = self._cache[key] = self.renderer({**self.notification, **changes})
        return render


async def apply_pre_send(app_id: str, hooks: AppHooks, notification: Mapping[str, Any], user_id: str,
                         prefs: Mapping[str, Any] | None, devices: Mapping[str, Mapping[str, Any]],
                         result: UserFanOut, adjusted: AdjustedRenders) -> None:
    """Ask the pre-send hook about each delivery of one user's fan-out and apply the answers to ``result``."""
    user = MappingProxyType({"app_id": app_id, "user_id": user_id, "preferences": dict(prefs or {})})
    for platform, items in list(result.deliveries.items()):
        kept = []
        for item in items:
            device_id = item["device_id"]
            device = devices.get(device_id) or {}
            verdict = await pre_send_verdict(app_id, hooks, notification, user,
                                             MappingProxyType(public_device(dict(device))))
            if verdict.action == "keep":
                kept.append(item)
            elif verdict.action == "drop":
                result.outcomes.append((device_id, platform, Status.SUPPRESSED, verdict.reason))
            elif verdict.action == "adjust":
                payload = adjusted(verdict.changes)(platform, device.get("locale"))
                if isinstance(payload, str):
                    result.outcomes.append((device_id, platform, Status.DEAD_LETTERED, payload))
                else:
                    kept.append({**item, "payload": payload})
            else:
                result.outcomes.append((device_id, platform, Status.DEAD_LETTERED, HOOK_ERROR))
        if kept:
            result.deliveries[platform] = kept
        else:
            del result.deliveries[platform]


class PostSendQueue:
    """The sender's post-send hooks: outcomes handed over per poll, delivered to the hooks by a task."""

    def __init__(self, hooks: Mapping[str, AppHooks], maxsize: int = POST_SEND_QUEUE) -> None:
        self.hooks = {app_id: h for app_id, h in hooks.items() if h.post_send is not None}
        self.maxsize = maxsize
        self._queue: asyncio.Queue[tuple[str, list[list[dict[str, Any]]]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0  # outcomes handed to hooks (for tests and logs)

    @classmethod
    def of(cls, hooks: Mapping[str, AppHooks]) -> PostSendQueue | None:
        """A queue when some app has a post_send hook, else None (the sender then pays nothing)."""
        queue = cls(hooks)
        return queue if queue.hooks else None

    def start(self) -> None:
        self._queue = asyncio.Queue(self.maxsize)
        self._task = asyncio.create_task(self._drain(), name="pushstream.post_send")

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (for at most ``timeout`` seconds), then stop."""
        if self._queue is not None and self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                log.warning("post_send: %d polls' outcomes not delivered at shutdown", self._queue.qsize())
            self._task.cancel()

    def offer(self, settled: Iterable[tuple[Any, Any]]) -> None:
        """One settled poll's (batch, settlement) pairs: grouped by app, queued without copying the statuses."""
        if self._queue is None:
            return
        by_app: dict[str, list[list[dict[str, Any]]]] = {}
        for batch, outcome in settled:
            if batch.app_id in self.hooks and outcome.statuses:
                by_app.setdefault(batch.app_id, []).append(outcome.statuses)
        for app_id, lists in by_app.items():
            try:
                self._queue.put_nowait((app_id, lists))
            except asyncio.QueueFull:
                metrics.hook_errors.labels(app_id, "post_send").inc()
                warn("app %s: post_send queue full: %d outcomes not handed to the hook", app_id,
                     sum(map(len, lists)))

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            app_id, lists = await self._queue.get()
            try:
                await self._call(app_id, [status for statuses in lists for status in statuses])
            finally:
                self._queue.task_done()

    async def _call(self, app_id: str, outcomes: list[dict[str, Any]]) -> None:
        hooks = self.hooks[app_id]
        fn = hooks.post_send
        assert fn is not None
        try:
            if hooks.post_send_async:
                await asyncio.wait_for(fn(outcomes), hooks.budget_seconds)
            else:
                started = time.perf_counter()
                fn(outcomes)
                took = time.perf_counter() - started
                if took > hooks.budget_seconds:
                    raise TimeoutError(f"took {took * 1000:.1f} ms for {len(outcomes)} outcomes")
            self.delivered += len(outcomes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.hook_errors.labels(app_id, "post_send").inc()
            warn("app %s: post_send hook failed on %d outcomes: %r", app_id, len(outcomes), exc)
