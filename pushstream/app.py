"""The faust.App and its settings wiring: `faust -A pushstream.app worker`."""

from __future__ import annotations

import logging
import os

import faust

from pushstream.runtime import runtime

# httpx logs every request at INFO; at campaign rates that is a log line per delivery.
logging.getLogger("httpx").setLevel(logging.WARNING)

rt = runtime()
settings = rt.settings

app = faust.App(
    settings.topic("pushstream"),
    broker=settings.kafka.broker,
    store="rocksdb://",
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
    broker_commit_interval=1.0,
    stream_wait_empty=False,
    table_standby_replicas=1,
    # Static group membership: a worker restarted under the same id (a pod restart, a crash) takes its
    # partitions back at once instead of waiting a session timeout for a rebalance.
    consumer_group_instance_id=os.environ.get("PUSHSTREAM_WORKER_ID") or None,
    web_host=settings.web.host,
    web_port=settings.web.port,
    web_bind=settings.web.bind,
    # Faust's built-in /table/ and /router/ endpoints expose table contents without authentication.
    web_tables_enabled=False,
    web_router_enabled=False,
    web_graph_enabled=False,
    web_stats_enabled=False,
)

# Importing registers the tables, agents and views on the app.
from pushstream import tables  # noqa: E402,F401
from pushstream.agents import ingest, planner, registry, router, scheduler  # noqa: E402,F401
from pushstream.agents.senders import SenderService, sender_services  # noqa: E402
from pushstream.web import views  # noqa: E402,F401

# The sender tier runs in this process too (its own consumer groups, one per lane, each poll settled in one
# Kafka transaction; see agents/senders.py).
senders: list[SenderService] = []


@app.task
async def _start_senders() -> None:
    for service in sender_services(settings, rt.layout):
        await service.start()
        senders.append(service)


@app.on_before_shutdown.connect
async def _stop_senders(*args: object, **kwargs: object) -> None:
    for service in senders:
        await service.stop()
