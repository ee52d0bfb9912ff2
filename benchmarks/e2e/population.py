"""The registered population: device registrations encoded up front, and the trickle's users."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.e2e.options import (
    APP,
    LOCALES,
    PLATFORMS,
    WEBPUSH_KEY_POOL,
)
from pushstream.testing.fakes import webpush_subscription


@dataclass
class Population:
    values: list[bytes]
    by_platform: Counter[str]
    tx_users: list[str]
    tx_devices: dict[str, int]  # statuses each trickle notification to that user yields

    users: int = 0
    per_user: int = 0

    @property
    def devices(self) -> int:
        return len(self.values)

    def device_ids(self) -> set[bytes]:
        """Every device id of the population (as build_population names them), for the exactly-once check."""
        ids: set[bytes] = set()
        for i in range(self.users):
            user = f"u{i:07d}"
            ids.update(f"{user}-{j}".encode() for j in range(self.tx_devices.get(user, self.per_user)))
        return ids


def build_population(users: int, per_user: int, mix: dict[str, float], tx_users: int, setup: dict[str, Any],
                     rng: random.Random) -> Population:
    """Device registrations, encoded up front so the timed publish is not slowed by generating them."""
    names, weights = list(mix), list(mix.values())
    seed = bytes.fromhex(setup["webpush_seed"])
    pool = [webpush_subscription(setup["webpush_origin"], seed, f"bench-key-{k}") for k in range(WEBPUSH_KEY_POOL)]
    values: list[bytes] = []
    by_platform: Counter[str] = Counter()
    tx: dict[str, int] = {}
    for i in range(users):
        user = f"u{i:07d}"
        if i < tx_users:
            platforms = [*PLATFORMS, *rng.choices(names, weights, k=max(0, per_user - len(PLATFORMS)))]
            tx[user] = len(platforms)
        else:
            platforms = rng.choices(names, weights, k=per_user)
        for j, name in enumerate(platforms):
            n = len(values)
            event: dict[str, Any] = {"type": "register", "app_id": APP, "user_id": user, "device_id": f"{user}-{j}",
                                     "platform": name, "locale": LOCALES[i % len(LOCALES)]}
            if name == "apns":
                event["token"] = f"{n:064x}"
            elif name == "fcm":
                event["token"] = f"fcm-{n:09d}"
            else:
                key = pool[n % len(pool)]
                event["subscription"] = {"endpoint": key["endpoint"].rsplit("/", 1)[0] + f"/sub-{n:09d}",
                                         "keys": key["keys"]}
            # A compact copy: each orjson result keeps its ~4 KiB output buffer alive (4 GB of RSS at 1M).
            values.append(bytes(memoryview(orjson.dumps(event))))
            by_platform[name] += 1
    return Population(values=values, by_platform=by_platform, tx_users=list(tx), tx_devices=tx, users=users,
                      per_user=per_user)
