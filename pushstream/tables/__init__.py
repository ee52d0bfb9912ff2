"""Table declarations: RocksDB-backed, changelogged, keyed by `app_id/user_id` as UTF-8 bytes.

The key serializer must be raw: Faust's table router hashes the serialized key with murmur2, and the internal
topics that feed these tables are partitioned by the same bytes (pushstream.rules.keys.partition_for).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import TableT

from pushstream.runtime import Runtime


@dataclass(frozen=True)
class Tables:
    # app/user → {device_id: device}
    devices: TableT
    # app/user → preferences (channels, categories, quiet_hours, timezone, max_per_day)
    preferences: TableT
    # app/user → {"sent": {notification_id: ts}, "counts": {day: {channel: n}}}: dedup and frequency caps
    user_state: TableT
    # "<due ms, 15 digits>/<id>" → IntentBatch dict: RocksDB keeps keys sorted, so due intents come first
    schedule: TableT
    # "<origin>|<partition>" → {"step": n, "after": last user key routed, "done": bool}: where a broadcast's
    # routing of one partition stands, so an interrupted one resumes instead of starting over
    cursors: TableT
    # app/token fingerprint → {"user_id", "device_id"}: a token belongs to at most one user and device
    token_owners: TableT
    # app/notification id → progress document (rules.progress), and b"\0" + JSON [app, notification id, user]
    # → {device_id: latest status entry}: one table, so both share a changelog partition (written in order)
    progress: TableT
    # app id → {"by_reason": {reason: n}, "seen": {dlq partition: highest offset counted}}
    dlq_counts: TableT
    # app/notification id → {"at": epoch seconds}: cancels, on every user partition (rules.cancel)
    cancelled: TableT


def declare_tables(app: faust.App, rt: Runtime) -> Tables:
    rocks = rt.settings.rocksdb
    options = {
        "block_cache_size": rocks.block_cache_mb * 1024 * 1024,
        "write_buffer_size": rocks.write_buffer_mb * 1024 * 1024,
        "max_write_buffer_number": rocks.max_write_buffers,
        "max_open_files": rocks.max_open_files,
    }

    def table(name: str, help_: str, partitions: int) -> TableT:
        # bytes keys make Faust pick the raw serializer for the changelog key (it derives it from key_type).
        return app.Table(name, default=None, partitions=partitions, key_type=bytes, options=options, help=help_)

    users = rt.layout.user_partitions
    return Tables(
        devices=table("devices", "Registered devices per user", users),
        preferences=table("preferences", "User preferences", users),
        user_state=table("user_state", "Per-user delivery memory: dedup and daily counts", users),
        schedule=table("schedule", "Intents waiting for send_at or the end of quiet hours", users),
        cursors=table("cursors", "Routing progress of broadcast intents per partition", users),
        token_owners=table("token_owners", "Which user and device hold a token",
                           rt.layout.partitions("pushstream.token-claims")),
        progress=table("progress", "Campaign progress per notification and its devices' latest status", users),
        dlq_counts=table("dlq_counts", "Dead letters per app and reason", users),
        cancelled=table("cancelled", "Cancelled notifications, remembered on every user partition", users),
    )


def table_key(key: str) -> bytes:
    """Table keys are the UTF-8 bytes of the string key (see module docstring)."""
    return key.encode("utf-8")


def progress_device_key(app_id: str, notification_id: str, user_id: str) -> bytes:
    """The progress table's key of one user's device entries for a notification. The leading NUL keeps these
    keys apart from the documents' `app/notification id` (app ids never start with one)."""
    return b"\0" + orjson.dumps([app_id, notification_id, user_id])


def progress_opened_key(app_id: str, notification_id: str, user_id: str) -> bytes:
    """The progress table's key of the sorted ids of one user's devices that opened a notification."""
    return b"\0" + orjson.dumps([app_id, notification_id, user_id, "opened"])


def due_keys(table: TableT, partition: int, now: float, limit: int) -> list[bytes]:
    """Keys of one local partition of the schedule table that are due at ``now``, earliest first."""
    store: Any = table.data
    db = store._db_for_partition(partition)
    upper = schedule_key(now, "")
    keys: list[bytes] = []
    iterator = db.iter()
    iterator.seek_to_first()
    while iterator.valid() and len(keys) < limit:
        key = iterator.key()
        if key > upper:
            break
        keys.append(key)
        iterator.next()
    return keys


def schedule_key(due: float, ident: str) -> bytes:
    return f"{int(due * 1000):015d}/{ident}".encode()


def partition_items(table: TableT, partition: int, prefix: str, after: str | None = None
                    ) -> Iterator[tuple[str, Any]]:
    """The (key, value) pairs of one local partition whose key starts with ``prefix``, in key order, from
    just after ``after`` (broadcast fan-out, straight from RocksDB)."""
    store: Any = table.data
    db = store._db_for_partition(partition)
    start = (after if after is not None and after >= prefix else prefix).encode("utf-8")
    raw_prefix = prefix.encode("utf-8")
    iterator = db.iter()
    iterator.seek(start)
    while iterator.valid():
        raw_key = iterator.key()
        if not raw_key.startswith(raw_prefix):
            break
        if after is None or raw_key != start:
            raw_value = iterator.value()
            if raw_value is not None:
                yield raw_key.decode("utf-8"), orjson.loads(raw_value)
        iterator.next()
