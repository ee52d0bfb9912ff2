"""Keys and partitioning: pushstream places keys exactly where aiokafka's Java-compatible default does."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from pushstream.rules.keys import partition_for, split_user_key, token_fingerprint, user_key

KEYS = [
    "",
    "a",
    "demo/u-1",
    "demo/u-2",
    "shop/user@example.com",
    "demo/ü-ñ-日本",
    "demo/" + "x" * 1000,
    "token-claims/3",
    "demo/0123456789abcdef",
]
PARTITION_COUNTS = [1, 2, 3, 7, 12, 64, 1000]


@pytest.mark.parametrize("partitions", PARTITION_COUNTS)
@pytest.mark.parametrize("key", KEYS)
def test_partition_for_matches_aiokafkas_default_partitioner(key: str, partitions: int) -> None:
    all_partitions = list(range(partitions))
    expected = DefaultPartitioner()(key.encode("utf-8"), all_partitions, all_partitions)
    assert partition_for(key, partitions) == expected


def test_partition_for_matches_for_many_generated_keys() -> None:
    all_partitions = list(range(12))
    partitioner = DefaultPartitioner()
    seen = set()
    for i in range(2000):
        key = f"demo/user-{i}"
        partition = partition_for(key, 12)
        assert partition == partitioner(key.encode(), all_partitions, all_partitions), key
        seen.add(partition)
    assert seen == set(all_partitions), "keys spread over every partition"


# Kafka's own murmur2 test vectors (clients/.../utils/UtilsTest.java), as signed Java ints.
@pytest.mark.parametrize(
    ("key", "java_hash"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_partition_for_uses_the_java_clients_murmur2(key: bytes, java_hash: int) -> None:
    assert murmur2(key) & 0xFFFFFFFF == java_hash & 0xFFFFFFFF
    for partitions in (1, 12, 100):
        assert partition_for(key.decode(), partitions) == (java_hash & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(
    ("app_id", "user_id"), [("demo", "u-1"), ("demo", "a/b/c"), ("shop", ""), ("demo", "user@example.com")]
)
def test_user_key_splits_back_at_the_first_slash(app_id: str, user_id: str) -> None:
    key = user_key(app_id, user_id)
    assert key == f"{app_id}/{user_id}"
    assert split_user_key(key) == (app_id, user_id)


def test_token_fingerprint_is_short_stable_hex() -> None:
    fingerprint = token_fingerprint("apns", "ab" * 32)
    assert len(fingerprint) == 16
    assert int(fingerprint, 16) >= 0
    assert fingerprint == token_fingerprint("apns", "ab" * 32)
    assert "ab" * 8 not in fingerprint


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("apns", "ab" * 32), ("apns", "cd" * 32)),
        (("apns", "token"), ("fcm", "token")),
        (("webpush", "https://push.example/a"), ("webpush", "https://push.example/b")),
    ],
)
def test_token_fingerprint_differs_by_platform_and_token(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert token_fingerprint(*a) != token_fingerprint(*b)


def test_murmur2_equals_the_kafka_clients_for_every_tail_length() -> None:
    import random

    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    from pushstream.rules.keys import murmur2

    rng = random.Random(7)
    for length in range(0, 80):
        for _ in range(25):
            data = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(data) == aiokafka_murmur2(data), data
    # The Java client's Utils.murmur2("21") is -973932308 as a signed int.
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
