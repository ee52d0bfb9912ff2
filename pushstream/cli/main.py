"""`pushstream`: worker, topics apply, fakes (contract §5), bench."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pushstream.config import ConfigError, load_settings
from pushstream.topology import apply_topics, load_layout, topics_file_path


def _topics_apply(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    path = topics_file_path(settings)
    layout = load_layout(path)
    created, drift = asyncio.run(apply_topics(settings, layout, dry_run=args.dry_run))
    verb = "would create" if args.dry_run else "created"
    for name in created:
        print(f"{verb} {name}")
    for item in drift:
        print(f"drift: {item.topic}: {item.problem}", file=sys.stderr)
    print(f"{len(layout.topics)} topics in {path}: {len(created)} {verb}, {len(drift)} drifted")
    return 1 if drift else 0


def _worker(args: argparse.Namespace, extra: list[str]) -> int:
    if args.config:
        os.environ["PUSHSTREAM_CONFIG"] = args.config
    if not args.no_apply:
        code = _topics_apply(argparse.Namespace(config=args.config, dry_run=False))
        if code:
            print("refusing to start a worker on drifted topics (use --no-apply to skip the check)", file=sys.stderr)
            return code
    from faust.cli.faust import cli

    # Faust's click CLI reads sys.argv-like args; it exits the process itself.
    cli.main(args=["-A", "pushstream.app", "worker", *extra], prog_name="pushstream worker")
    return 0


def _fakes(extra: list[str]) -> int:
    from pushstream.testing.fakes.server import main as fakes_main

    return int(fakes_main(extra) or 0)


def _bench(extra: list[str]) -> int:
    # benchmarks/ lives beside the package in the checkout and is not installed: make it importable.
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks.e2e import main as bench_main

    return int(bench_main(extra) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pushstream", description="Kafka-native push-notification pipeline")
    parser.add_argument("--config", help="path of pushstream.yaml (default: $PUSHSTREAM_CONFIG or ./pushstream.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker (faust -A pushstream.app worker); extra args go to faust")
    worker.add_argument("--no-apply", action="store_true", help="do not create missing topics first")
    topics = commands.add_parser("topics", help="manage the topics in topics.yaml")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True)
    apply = topic_commands.add_parser("apply", help="create missing topics; exit 1 on drift")
    apply.add_argument("--dry-run", action="store_true")
    commands.add_parser("fakes", help="run fake APNs, FCM and Web Push servers (see --help)", add_help=False)
    commands.add_parser("bench", help="end-to-end benchmark on local Kafka and the fakes (see --help)", add_help=False)

    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "worker":
            return _worker(args, extra)
        if args.command == "fakes":
            return _fakes(extra)
        if args.command == "bench":
            return _bench(extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _topics_apply(args)
    except ConfigError as exc:
        print(f"pushstream: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
