"""Keys and partitioning: the one place that says how pushstream keys and places its records."""

from collections.abc import Callable, Iterable
from typing import TypeVar

from aiokafka.partitioner import murmur2

from pushstream.models.identity import token_fingerprint as token_fingerprint


def user_key(app_id: str, user_id: str) -> str:
    """Table and internal-topic key of a user. App ids cannot contain '/', so the first '/' splits."""
    return f"{app_id}/{user_id}"


def split_user_key(key: str) -> tuple[str, str]:
    app_id, _, user_id = key.partition("/")
    return app_id, user_id


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (and Faust's table router) picks for this key.

    Producers outside pushstream may use other partitioners, so pushstream re-keys everything it reads
    together, and this must stay the Java client's murmur2 for table_route to find the owner.
    """
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


T = TypeVar("T")


def by_partition(items: Iterable[T], key_of: Callable[[T], str], partitions: int) -> dict[int, list[T]]:
    """Items grouped by the partition of their key (`partition_for`): one batch record per partition."""
    grouped: dict[int, list[T]] = {}
    for item in items:
        grouped.setdefault(partition_for(key_of(item), partitions), []).append(item)
    return grouped
