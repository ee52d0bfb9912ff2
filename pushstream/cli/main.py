"""`pushstream`: worker, topics apply, fakes, replay, dlq redrive, tail, send, notifications show (contract §5),
bench."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiokafka.errors import KafkaConnectionError

from pushstream.cli import dlq, notifications, replay, send, tail
from pushstream.config import ConfigError, load_settings
from pushstream.kafkatools import BrokerUnreachable, check_broker, unreachable
from pushstream.topology import apply_topics, kafka_bootstrap, load_layout, topics_file_path


def _topics_apply(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    path = topics_file_path(settings)
    layout = load_layout(path)
    try:
        created, drift = asyncio.run(apply_topics(settings, layout, dry_run=args.dry_run))
    except KafkaConnectionError:
        raise unreachable(kafka_bootstrap(settings.kafka.broker)) from None
    verb = "would create" if args.dry_run else "created"
    for name in created:
        print(f"{verb} {name}")
    for item in drift:
        print(f"drift: {item.topic}: {item.problem}", file=sys.stderr)
    print(f"{len(layout.topics)} topics in {path}: {len(created)} {verb}, {len(drift)} drifted")
    return 1 if drift else 0


# Faust's options that go before the `worker` command; everything else is an option of `faust worker`.
FAUST_TOP_OPTIONS = {"-D": True, "--datadir": True, "-L": True, "--loop": True, "-l": True, "--loglevel": True,
                     "-f": True, "--logfile": True, "-W": True, "--workdir": True, "--debug": False,
                     "--no-debug": False, "-q": False, "--quiet": False, "--no-quiet": False, "--json": False}


def split_faust_args(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """(top-level faust options, `faust worker` options) from the pass-through arguments."""
    top: list[str] = []
    worker: list[str] = []
    items = list(extra)
    while items:
        arg = items.pop(0)
        name = arg.split("=", 1)[0]
        if name in FAUST_TOP_OPTIONS:
            top.append(arg)
            if FAUST_TOP_OPTIONS[name] and "=" not in arg and items:
                top.append(items.pop(0))
        else:
            worker.append(arg)
    return top, worker


def option_value(args: Sequence[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name in names:
            return value if value else (args[i + 1] if i + 1 < len(args) else None)
    return None


def _worker(args: argparse.Namespace, extra: list[str]) -> int:
    from pushstream import logs
    from pushstream.credentials import check_credentials
    from pushstream.hooks import load_hooks

    if args.config:
        os.environ["PUSHSTREAM_CONFIG"] = args.config
    # Children (the supervisor's, Faust's logging set-up) read the format from the environment.
    os.environ[logs.FORMAT_ENV] = logs.log_format(args.log_format)
    # Every key and credential file parsed before anything starts (every role): a bad one is a ConfigError,
    # one message and exit 2, never a traceback or a process that looks ready and cannot send.
    settings = load_settings(args.config)
    check_credentials(settings)
    load_hooks(settings)  # a per-app hook that cannot be imported stops every role here, naming it
    _preflight(args.config)
    if not args.no_apply:
        code = _topics_apply(argparse.Namespace(config=args.config, dry_run=False))
        if code:
            print("refusing to start a worker on drifted topics (use --no-apply to skip the check)", file=sys.stderr)
            return code
    if args.role == "router":
        return _router(extra)
    if args.role == "sender":
        return _sender(args, extra)
    return _machine(args, extra)


def _preflight(config: str | None) -> None:
    """A bad config or an unreachable broker is one line and exit 2 here, not a traceback in a child process."""
    from pushstream.runtime import load_runtime

    rt = load_runtime(config)
    asyncio.run(check_broker(kafka_bootstrap(rt.settings.kafka.broker)))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pushstream {version('pushstream')}"
    except PackageNotFoundError:
        return "pushstream (not installed)"


def _router(extra: list[str]) -> int:
    from faust.cli.faust import cli

    os.environ["PUSHSTREAM_ROLE"] = "router"
    top, worker = split_faust_args(extra)
    quiet_options = {"-q", "--quiet", "--no-quiet"}
    if os.environ.get("PUSHSTREAM_LOG_FORMAT") == "json" and not quiet_options & {a.split("=")[0] for a in top}:
        top.append("--quiet")  # Faust's start-up banner is not JSON; its logs are
    if option_value(top, "-l", "--loglevel") is None:
        top += ["--loglevel", "info"]  # like the senders (Faust's own default, warn, hides the access log)
    if option_value(top, "-L", "--loop") is None:
        # Faust's --loop alone left the router on asyncio's loop (measured): set the policy before Faust
        # creates its loop.
        from pushstream.cli.sender import install_uvloop

        install_uvloop()
    # Faust's click CLI exits the process itself.
    cli.main(args=[*top, "-A", "pushstream.app", "worker", *worker], prog_name="pushstream worker")
    return 0


def _sender(args: argparse.Namespace, extra: list[str]) -> int:
    from pushstream.cli import sender
    from pushstream.models.vocabulary import LANES, PLATFORMS
    from pushstream.runtime import load_runtime

    rt = load_runtime(args.config)
    platforms = tuple(p for p in (args.platforms or ",".join(PLATFORMS)).split(",") if p)
    unknown = set(platforms) - set(PLATFORMS)
    if unknown:
        print(f"pushstream: unknown platform(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    port = option_value(extra, "--web-port")
    return sender.run(rt, lanes=tuple(args.lane or LANES), platforms=platforms,
                      host=option_value(extra, "--web-host", "-h") or "127.0.0.1",
                      port=int(port) if port else rt.settings.web.port + 1,
                      loglevel=option_value(extra, "-l", "--loglevel") or "info", log_format=args.log_format)


def _machine(args: argparse.Namespace, extra: list[str]) -> int:
    """The router and one sender process per lane, supervised."""
    from pushstream.cli.supervisor import Child, supervise
    from pushstream.config import load_settings
    from pushstream.models.vocabulary import LANES

    settings = load_settings(args.config)
    port = int(option_value(extra, "--web-port") or settings.web.port)
    base = [sys.executable, "-m", "pushstream.cli.main"] + (["--config", args.config] if args.config else [])
    env = dict(os.environ)
    children = [Child("router", [*base, "worker", "--role", "router", "--no-apply", *extra], env)]
    top, _ = split_faust_args(extra)
    loglevel = option_value(top, "-l", "--loglevel")
    for i, lane in enumerate(args.lane or LANES):
        argv = [*base, "worker", "--role", "sender", "--lane", lane, "--no-apply", "--web-port", str(port + 1 + i)]
        if args.platforms:
            argv += ["--platforms", args.platforms]
        if loglevel:
            argv += ["--loglevel", loglevel]
        children.append(Child(f"sender-{lane}", argv, env))
    return supervise(children, json_lines=env.get("PUSHSTREAM_LOG_FORMAT") == "json")


def _fakes(extra: list[str]) -> int:
    from pushstream.testing.fakes.server import main as fakes_main

    return int(fakes_main(extra) or 0)


def _bench(extra: list[str]) -> int:
    # benchmarks/ lives beside the package in the checkout and is not installed: make it importable.
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks.e2e.run import main as bench_main

    return int(bench_main(extra) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pushstream", description="Kafka-native push-notification pipeline")
    parser.add_argument("--config", help="path of pushstream.yaml (default: $PUSHSTREAM_CONFIG or ./pushstream.yaml)")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker", help="run this machine's processes: the router and a sender per lane, supervised (or one --role); "
                       "other options go to faust")
    worker.add_argument("--no-apply", action="store_true", help="do not create missing topics first")
    worker.add_argument("--role", choices=("router", "sender"), help="run one role only")
    worker.add_argument("--lane", choices=("transactional", "bulk"), action="append",
                        help="sender lane(s) (default: both)")
    worker.add_argument("--platforms", help="comma-separated platforms a sender serves (default: all)")
    worker.add_argument("--log-format", choices=("json", "text"),
                        help="json: one JSON object per line (default; or $PUSHSTREAM_LOG_FORMAT); text: for people")
    topics = commands.add_parser("topics", help="manage the topics in topics.yaml")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True)
    apply = topic_commands.add_parser("apply", help="create missing topics; exit 1 on drift")
    apply.add_argument("--dry-run", action="store_true")
    commands.add_parser("fakes", help="run fake APNs, FCM and Web Push servers (see --help)", add_help=False)
    commands.add_parser("bench", help="end-to-end benchmark on local Kafka and the fakes (see --help)", add_help=False)
    notifications.add_parser(commands)
    replay.add_parser(commands)
    dlq.add_parser(commands)
    tail.add_parser(commands)
    send.add_parser(commands)

    args, extra = parser.parse_known_args(argv)
    # aiokafka logs each failed connection attempt; with no logging configured Python prints them on stderr
    # before our one-line error. Workers configure logging and still see them.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    try:
        if args.command == "worker":
            return _worker(args, extra)
        if args.command == "fakes":
            return _fakes(extra)
        if args.command == "bench":
            return _bench(extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        return _topics_apply(args)
    except (ConfigError, BrokerUnreachable) as exc:
        print(f"pushstream: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KafkaConnectionError as exc:
        # A client outside pushstream.kafkatools (e.g. topics apply's admin client) failed to bootstrap.
        print(f"pushstream: cannot reach the Kafka broker ({exc}): is it running, and is kafka.broker in the "
              "config right?", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


COMMANDS = {"replay": replay.run, "dlq": dlq.run, "tail": tail.run, "send": send.run,
            "notifications": notifications.show}


def one_line(text: str) -> str:
    """A multi-line message (a YAML parser's, with its caret under the column) as one line."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip() and line.strip() != "^")


if __name__ == "__main__":
    sys.exit(main())
