"""`create_app`: the Faust app of one process role, with only that role's tables, agents and views.

Roles:
- ``router``: the stateful part (ingest, registry, planner, router, scheduler, tables, HTTP API, views);
- ``all``: the router plus the sender tier in the same process (what `faust -A pushstream.app worker` runs);
- ``sender`` is no Faust app: it owns its consumer commits (see `pushstream.agents.senders`), so it runs as
  `pushstream worker --role sender` (`pushstream.cli.sender`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, NoReturn

import faust

from pushstream import logs, metrics
from pushstream.agents import ingest, planner, progress, registry, router, scheduler
from pushstream.agents.io import Context
from pushstream.agents.senders import LANES, PLATFORMS, SenderService, sender_services
from pushstream.runtime import Runtime
from pushstream.web import views

APP_ROLES = ("all", "router")

log = logging.getLogger(__name__)


def create_app(rt: Runtime, role: str = "all", *, lanes: tuple[str, ...] = LANES,
               platforms: tuple[str, ...] = PLATFORMS, store: str = "rocksdb://",
               datadir: str | None = None) -> faust.App:
    """The Faust app of ``role``; nothing is registered anywhere else.

    ``store`` and ``datadir`` are for tests (`faust worker --datadir` sets the data dir of a worker); the
    router's batched table writes and local reads need RocksDB (`pushstream.tables.batch`)."""
    if role not in APP_ROLES:
        raise ValueError(f"role {role!r} is not a Faust app role (one of {', '.join(APP_ROLES)})")
    # httpx logs every request at INFO; at campaign rates that is a log line per delivery.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = rt.settings
    overrides: dict[str, Any] = {} if datadir is None else {"datadir": datadir}
    app = faust.App(
        settings.topic("pushstream"),  # the router's group and changelog names: kept across versions
        broker=settings.kafka.broker,
        store=store,
        **overrides,
        autodiscover=False,
        origin="pushstream",
        # Everything on the wire is bytes we encode ourselves (orjson), so malformed input reaches our code
        # instead of crashing Faust's deserializer.
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=rt.layout.user_partitions,
        topic_replication_factor=rt.layout.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_compression_type="lz4",
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        table_standby_replicas=1,
        # Static group membership: a worker restarted under the same id (a pod restart, a crash) takes its
        # partitions back at once instead of waiting a session timeout for a rebalance.
        consumer_group_instance_id=os.environ.get("PUSHSTREAM_WORKER_ID") or None,
        # JSON lines (or text with --log-format text), the same formatter as the sender processes'.
        logging_config=logs.faust_config(logs.role_name(role)),
        Worker="pushstream.factory:Worker",
        web_host=settings.web.host,
        web_port=settings.web.port,
        web_bind=settings.web.bind,
        # Faust's built-in /table/ and /router/ endpoints expose table contents without authentication.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
    )
    ctx = Context.build(app, rt)
    for module in (ingest, registry, planner, router, scheduler, progress):
        module.register(ctx)
    senders: list[SenderService] = []
    if role == "all":
        attach_senders(app, sender_services(settings, rt.layout, lanes, platforms), senders)
    watch_lag(app, settings.topic("pushstream"), senders)
    views.register(ctx, ready_checks=(lambda: {"senders_started": all(s.started for s in senders)})
                   if role == "all" else None)
    return app


class Worker(faust.Worker):
    """Faust's worker without its terminal spinner when logging JSON: the spinner writes cursor escape codes to
    stdout (at --loglevel warn, Faust's default), which are no JSON lines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if logs.log_format() == "json":
            self.spinner = None


def attach_senders(app: faust.App, services: list[SenderService], started: list[SenderService]) -> None:
    """Run sender services inside a Faust worker: started with it, settled and stopped before it stops."""

    stopping = False

    async def start_senders() -> None:
        for service in services:
            await service.start()
            started.append(service)
        # A sender service whose loop ended (e.g. TransactionStuck) must not leave a worker that looks alive
        # and sends nothing: exit non-zero, as a sender process does, so the supervisor or orchestrator
        # restarts it. The router's tables and offsets are safe: the same as a crash, which they survive.
        await watch_services([s.task for s in started if s.task is not None], lambda: stopping)

    async def stop_senders(*args: Any, **kwargs: Any) -> None:
        nonlocal stopping
        stopping = True
        for service in started:
            await service.stop()

    app.task(start_senders)
    app.on_before_shutdown.connect(stop_senders)
    metrics.watch_senders(services)


async def watch_services(tasks: list[asyncio.Task[None]], stopping: Callable[[], bool],
                         on_death: Callable[[set[asyncio.Task[None]]], None] | None = None) -> None:
    """Wait while the services' loops run; when one ends outside a shutdown, ``on_death`` (default: exit)."""
    while tasks and not stopping():
        done, _ = await asyncio.wait(tasks, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        if done and not stopping():
            (on_death or dead_service_exit)(done)
            return


def dead_service_exit(done: set[asyncio.Task[None]], code: int = 1) -> NoReturn:
    """Log why the sender services in ``done`` ended and end the process at once (a stuck transaction's task
    would keep a graceful shutdown waiting for ever)."""
    for task in done:
        error = None if task.cancelled() else task.exception()
        log.error("a sender service died in the all-in-one worker; exiting %d for a restart", code,
                  exc_info=error)
    logging.shutdown()
    os._exit(code)


def watch_lag(app: faust.App, group: str, senders: list[SenderService]) -> None:
    """Consumer lag of the router's group (and of the in-process senders') and table sizes on a timer."""
    metrics.install()

    async def measure() -> None:
        await metrics.measure_router_lag(app, group)
        await metrics.measure_sender_lag(senders)
        metrics.measure_tables(app)

    app.timer(5.0)(measure)
