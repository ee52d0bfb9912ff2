"""`pushstream bench`: set up fakes, topics and processes, run the phases, report, clean up."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import yaml

from benchmarks.e2e.meters import CpuMeter, broker_pid, machine
from benchmarks.e2e.options import (
    API_KEY,
    APP,
    ROOT,
    build_parser,
)
from benchmarks.e2e.phases import Bench
from benchmarks.e2e.population import build_population
from benchmarks.e2e.processes import RoleProcess, make_processes, wait_all_ready
from benchmarks.e2e.report import code_version, summary
from pushstream import kafkatools
from pushstream.config import Settings, load_settings
from pushstream.kafkatools import say
from pushstream.testing.fakes.control import FakesProcess
from pushstream.testing.stack import dev_app_config, write_topics_file
from pushstream.topology import TopicLayout, apply_topics, kafka_bootstrap, load_layout


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM's default ends the process on the spot and would orphan the workers and fakes: exit through
    # the finally below instead.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    scenarios = [] if args.recovery.strip() == "none" else [s.strip() for s in args.recovery.split(",") if s.strip()]
    unknown = set(scenarios) - {"sigkill", "sigterm", "wipe"}
    if unknown or args.users < 1 or args.devices_per_user < 1 or args.workers < 1 or args.bulk_senders < 1:
        build_parser().error(f"bad options (unknown recovery scenario {sorted(unknown)})" if unknown
                             else "--users, --devices-per-user, --workers and --bulk-senders must be at least 1")
    if args.deployment == "split" and args.workers != 1:
        build_parser().error("--workers is for --deployment all-in-one (split: --bulk-senders)")
    workdir: Path = args.workdir.resolve()
    prefix = f"bench{int(time.time())}."
    run_dir = workdir / prefix.rstrip(".")
    run_dir.mkdir(parents=True, exist_ok=True)

    # Fakes per run (their setup dir holds the ready file and the log): concurrent runs must not share one.
    say(f"==> fakes in benchmark mode (setup in {run_dir / 'fakes'})")
    fakes = FakesProcess(run_dir / "fakes", benchmark=True, tied=not args.keep)
    client = fakes.start()
    workers: list[RoleProcess] = []
    settings: Settings | None = None
    layout: TopicLayout | None = None
    try:
        if args.provider_latency > 0:
            client.set_latency(args.provider_latency)
        setup = client.setup()
        # Always a copy: a worker restarted in the recovery phase must see the layout its topics were made
        # from, even if the checkout's topics.yaml changes meanwhile.
        topics_path = write_topics_file(run_dir / "topics.yaml", ROOT / "topics.yaml", args.partitions)
        config = {
            "kafka": {"broker": f"kafka://{args.broker}", "topic_prefix": prefix, "topics_file": str(topics_path)},
            "apps": {APP: dev_app_config(setup, [API_KEY])},
        }
        config_path = run_dir / "pushstream.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        settings = load_settings(config_path)
        layout = load_layout(topics_path)
        created, drift = asyncio.run(apply_topics(settings, layout))
        if drift:
            raise RuntimeError(f"topic drift on a fresh prefix: {drift}")
        extra_env = {"BROKER_SESSION_TIMEOUT": str(args.session_timeout)} if args.session_timeout else None
        workers.extend(make_processes(args, config_path, run_dir, extra_env))
        say(f"==> {len(created)} topics with prefix {prefix!r} ({layout.user_partitions} user partitions); "
            f"{args.deployment}: starting {', '.join(w.name for w in workers)}; logs in {run_dir}")
        started = time.monotonic()
        for worker in workers:
            worker.start()
        wait_all_ready(workers, timeout=args.timeout)
        say(f"    ready after {time.monotonic() - started:.1f}s: "
            + ", ".join(f"{w.name} pid {w.pid} {w.url}" for w in workers))

        population = build_population(args.users, args.devices_per_user, args.mix, min(args.tx_users, args.users),
                                      setup, random.Random(args.seed))
        groups: dict[str, Callable[[], list[int | None]]] = {"workers": lambda: [w.pid for w in workers]}
        for w in workers:
            groups[w.name] = lambda w=w: [w.pid]  # type: ignore[misc]
        meter = CpuMeter({
            **groups,
            "fakes": lambda: [fakes.endpoints.pid if fakes.endpoints else None],
            "broker": lambda: [broker_pid(args.broker)],
        })
        bench = Bench(args=args, settings=settings, layout=layout, fakes=fakes, client=client, workers=workers,
                      population=population, meter=meter)
        bench.results["config"] = {
            "users": args.users, "devices_per_user": args.devices_per_user, "devices": population.devices,
            "tx_users": len(population.tx_users), "mix": args.mix, "deployment": args.deployment,
            "workers": args.workers if args.deployment == "all-in-one" else None,
            "bulk_senders": args.bulk_senders if args.deployment == "split" else None,
            "processes": [w.name for w in workers],
            "partitions": layout.user_partitions, "trickle_rate": args.trickle_rate,
            "provider_latency": args.provider_latency, "session_timeout": args.session_timeout,
            "topic_prefix": prefix, "broker_pid_visible": broker_pid(args.broker) is not None,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "code": code_version(),
        }
        bench.results["machine"] = machine()

        async def traffic() -> None:
            await bench.registration()
            bench.save()
            await bench.campaign()
            bench.save()

        try:
            asyncio.run(traffic())
            bench.recovery(scenarios)
        except BaseException as exc:
            bench.results["error"] = repr(exc)
            bench.save()
            raise
        results = bench.results
        bench.save()
        say(summary(results))
        if args.json is not None:
            say(f"\nresults written to {args.json}")
        compact = {k: v for k, v in results.items()}
        compact["transactional"] = {k: v for k, v in results["transactional"].items()
                                    if not k.endswith("_latencies_ms")}
        say(orjson.dumps(compact, option=orjson.OPT_INDENT_2).decode())
        return 0
    finally:
        if args.keep:
            say(f"(--keep: workers {[w.process.pid for w in workers if w.process]}, fakes pid "
                f"{fakes.endpoints.pid if fakes.endpoints else '?'}, topics {prefix}* and {run_dir} are left)")
        else:
            for worker in workers:
                worker.stop()
            fakes.stop()
            if settings is not None and layout is not None:
                try:
                    # Every topic of the run carries its (never empty) prefix, Faust's own too.
                    asyncio.run(kafkatools.delete_topics_with_prefix(kafka_bootstrap(settings.kafka.broker), prefix))
                except Exception as exc:  # cleanup must not hide the run's own error
                    say(f"warning: could not delete the {prefix}* topics: {exc!r}")
            for worker in workers:
                shutil.rmtree(worker.datadir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
