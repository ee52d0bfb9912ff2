"""Ingest: validate producer input and re-key it by app/user onto the internal user-events topic.

Producers may use any partitioner, so nothing downstream trusts their partitioning: records are grouped by
the partition pushstream computes and sent as one batch record per partition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import faust
from faust.types import EventT, StreamT

from pushstream import metrics
from pushstream.agents.io import Context, Outbox, event_batches, message_time
from pushstream.config import Settings
from pushstream.models.base import Invalid, iso
from pushstream.models.inputs import decode_device, decode_preference

Parser = Callable[[bytes | None, Settings], faust.Record]


def rekey_batch(events: list[EventT], kind: str, parse: Parser, settings: Settings,
                outbox: Outbox) -> list[dict[str, Any]]:
    """Validate each record; bad ones go to the DLQ; returns the good ones as user events."""
    good: list[dict[str, Any]] = []
    for event in events:
        try:
            record: Any = parse(event.message.value, settings)
        except Invalid as error:
            outbox.dead_letter(event, error, kind)
            continue
        except Exception as error:  # a worker never crashes on input; the record is kept in the DLQ
            outbox.dead_letter(event, Invalid("internal_error", repr(error)), kind)
            continue
        good.append({"kind": kind, **record.asdict(),
                     "at": iso(dt.datetime.fromtimestamp(message_time(event), dt.UTC))})
    return good


def register(ctx: Context) -> None:
    pipeline = ctx.rt.settings.pipeline

    def ingest_agent(source: faust.TopicT, kind: str, parse: Parser) -> None:
        async def ingest(stream: StreamT) -> None:
            async for events in event_batches(stream, pipeline.ingest_batch, pipeline.ingest_within_seconds):
                with metrics.batch_seconds.labels(f"ingest-{kind}").time():
                    metrics.records_in.labels(kind).inc(len(events))
                    outbox = ctx.outbox()
                    ctx.add_user_events(outbox, rekey_batch(list(events), kind, parse, ctx.rt.settings, outbox))
                    await outbox.flush()

        ctx.app.agent(source, name=f"pushstream.ingest_{kind}")(ingest)

    ingest_agent(ctx.topics.devices_in, "device", decode_device)
    ingest_agent(ctx.topics.preferences_in, "preference", decode_preference)
