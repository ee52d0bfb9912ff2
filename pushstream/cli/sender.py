"""`pushstream worker --role sender`: the stateless sender tier as its own process.

No Faust app: each (lane, platform) is a `SenderService` (its own consumer group and transactional producer),
on uvloop, with a small HTTP server for /healthz, /readyz and /metrics. SIGTERM settles the poll in progress,
leaves the groups and exits 0; a service that dies exits the process non-zero, for the supervisor to restart.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
from collections.abc import Sequence

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pushstream import logs
from pushstream import metrics as metrics_
from pushstream.agents.senders import SenderService
from pushstream.models.vocabulary import LANES, PLATFORMS
from pushstream.runtime import Runtime
from pushstream.web import errors

log = logging.getLogger("pushstream.sender")

# After a service died, the others get this long to stop before the process exits anyway: a producer broken
# by a broker restart may never finish closing, and a restart is what the dead service needs.
STOP_AFTER_DEATH_SECONDS = 45.0


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; a platform without it still runs
        log.warning("uvloop is not installed: the sender runs on asyncio's default loop")
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def web_app(services: Sequence[SenderService]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        state = {f"{s.lane}/{'+'.join(s.platforms)}": s.started and s.ready.is_set() for s in services}
        ready = all(state.values())
        return web.Response(body=orjson.dumps({"ready": ready, "senders": state}), status=200 if ready else 503,
                            content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics_.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def tasks(request: web.Request) -> web.Response:
        """Where every task of this process waits: for an operator chasing a stuck sender."""
        out = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(limit=12, file=out)
        return web.Response(text=out.getvalue())

    async def state(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps([s.describe() for s in services]), content_type="application/json")

    # Unknown routes (404), wrong methods (405) and uncaught errors (500) answer JSON, as the router's do.
    application = web.Application(middlewares=[logs.access_middleware(), errors.json_errors_middleware()])
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/metrics", metrics)
    application.router.add_get("/debug/tasks", tasks)
    application.router.add_get("/debug/senders", state)
    return application


async def serve(rt: Runtime, *, lanes: Sequence[str], platforms: Sequence[str], host: str, port: int) -> int:
    services = [SenderService(rt.settings, rt.layout, lane, platforms=[p]) for lane in lanes for p in platforms]
    metrics_.watch_senders(services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(web_app(services), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    code = 0
    lag = asyncio.create_task(metrics_.lag_loop(lambda: metrics_.measure_sender_lag(services)),
                              name="pushstream.sender.lag")
    try:
        for service in services:
            await service.start()
        log.info("sender process ready: lanes %s, platforms %s, http://%s:%d", ",".join(lanes), ",".join(platforms),
                 host, port)
        waiters = [asyncio.ensure_future(stop.wait())] + [s.task for s in services if s.task is not None]
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            code = 1
            for task in done:
                if task.exception() is not None:
                    log.error("a sender service died", exc_info=task.exception())
    finally:
        lag.cancel()
        stopping = asyncio.ensure_future(stop_all(services, runner))
        finished, _ = await asyncio.wait({stopping}, timeout=STOP_AFTER_DEATH_SECONDS if code else None)
        if code:
            # A dead service may leave a task that never ends (a stuck transaction's abort), and asyncio.run
            # waits for every task on the way out: exit here. Nothing is left to save, the offsets commit with
            # each poll's transaction.
            if not finished:
                log.error("sender services did not stop within %.0fs after one died", STOP_AFTER_DEATH_SECONDS)
            log.error("exiting %d for a restart", code)
            logging.shutdown()
            os._exit(code)
    return code


async def stop_all(services: Sequence[SenderService], runner: web.AppRunner) -> None:
    for service in services:
        try:
            await service.stop()
        except Exception:
            log.exception("stopping %s/%s", service.lane, service.platforms)
    await runner.cleanup()


def run(rt: Runtime, *, lanes: Sequence[str] = LANES, platforms: Sequence[str] = PLATFORMS,
        host: str = "127.0.0.1", port: int = 6067, loglevel: str = "info", log_format: str | None = None) -> int:
    logs.configure(logs.role_name("sender-" + "+".join(lanes) if len(lanes) == 1 else "sender"), fmt=log_format,
                   level=loglevel)
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    install_uvloop()
    return asyncio.run(serve(rt, lanes=lanes, platforms=platforms, host=host, port=port))
