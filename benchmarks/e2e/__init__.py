"""End-to-end benchmark: local Kafka, the fake providers in benchmark mode, real pushstream processes, and traffic.

Deployment (--deployment): `split` (default) runs one router process (`pushstream worker --role router`) and
one sender process per lane (`--role sender --lane transactional|bulk`, plus --bulk-senders - 1 more bulk
ones); `all-in-one` runs --workers `faust -A pushstream.app worker` processes (router and senders together).

Phases (docs/benchmarks.md explains every figure):
  1. registration: U users x D devices published like an external producer (large batches, random
     partitions); rate = devices / (first publish -> the worker group has committed everything on devices,
     user-events and token-claims);
  2. campaign: one marketing broadcast to every device while a steady trickle of transactional
     notifications flows; deliveries/s from the status topic, trickle latency, CPU per process, peak RSS;
  3. recovery: worker 1 (the router when split) SIGKILLed / SIGTERMed / restarted on a wiped data dir, time
     until /readyz is 200.

`python -m benchmarks.e2e --help` or `pushstream bench --help`. Modules: options (the command line), population,
meters (CPU, RSS), processes, watch (traffic and status watchers), phases, report, run (main).
"""
