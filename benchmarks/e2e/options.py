"""The benchmark's command line (`pushstream bench --help`) and the names every phase shares."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = "bench"
API_KEY = "bench-key"
PLATFORMS = ("apns", "fcm", "webpush")
LOCALES = ("en-US", "de-DE", "fr-FR", "en-GB")
PROGRESS_EVERY = 2.0
TX_PREFIX = "tx-"
WEBPUSH_KEY_POOL = 8  # benchmark-mode fakes do not decrypt, so subscriptions may share key pairs
LANES = ("transactional", "bulk")


def parse_mix(text: str) -> dict[str, float]:
    """`apns=50,fcm=40,webpush=10` -> weights per platform."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in PLATFORMS:
            raise argparse.ArgumentTypeError(f"unknown platform {name!r} in --mix (use {', '.join(PLATFORMS)})")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--mix: {part!r} is not platform=weight") from None
    if not mix or sum(mix.values()) <= 0 or min(mix.values()) < 0:
        raise argparse.ArgumentTypeError("--mix needs at least one positive weight")
    return mix


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushstream bench",
        description="End-to-end benchmark against local Kafka and the fake providers (docs/benchmarks.md).")
    parser.add_argument("--users", type=int, default=5000, help="registered users (default 5000)")
    parser.add_argument("--devices-per-user", type=int, default=2, help="devices per user (default 2)")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("apns=50,fcm=40,webpush=10"),
                        help="platform weights of the devices (default apns=50,fcm=40,webpush=10)")
    parser.add_argument("--tx-users", type=int, default=100,
                        help="users (of the population) with one device per platform that the trickle targets")
    parser.add_argument("--deployment", choices=("split", "all-in-one"), default="split",
                        help="split: a router process and sender processes per lane (default); all-in-one: "
                             "--workers processes running router and senders together")
    parser.add_argument("--bulk-senders", type=int, default=1,
                        help="split: bulk-lane sender processes (default 1; the transactional lane has one)")
    parser.add_argument("--workers", type=int, default=1, help="all-in-one: worker processes (default 1)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions of every topic (default: as in topics.yaml)")
    parser.add_argument("--trickle-rate", type=float, default=5.0,
                        help="transactional notifications per second during the campaign (default 5)")
    parser.add_argument("--idle-seconds", type=float, default=3.0,
                        help="trickle before the campaign starts, for an idle latency baseline (default 3)")
    parser.add_argument("--provider-latency", type=float, default=0.0,
                        help="seconds every fake provider waits before answering (default 0)")
    parser.add_argument("--session-timeout", type=float, default=None,
                        help="workers' Kafka session timeout in seconds (BROKER_SESSION_TIMEOUT; default Faust's "
                             "60): bounds how long a SIGKILLed member blocks the group")
    parser.add_argument("--recovery", default="sigkill,sigterm,wipe",
                        help="restart scenarios for worker 1 (split: the router), comma-separated from sigkill, "
                             "sigterm, wipe; 'none' skips them (default all three)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="deadline in seconds for each phase (worker start, drain, campaign, restart)")
    parser.add_argument("--broker", default="127.0.0.1:9092", help="Kafka bootstrap (default 127.0.0.1:9092)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench",
                        help="config, logs, data dirs and fakes setup (default ./var/bench)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the population and the trickle")
    parser.add_argument("--keep", action="store_true",
                        help="leave workers, fakes, topics and data dirs in place at the end")
    return parser
