"""Run all three fakes plus a JSON control API; the entry point of ``python -m pushstream.testing.fakes``.

Control API (HTTP/1.1, JSON bodies; ``provider`` is apns | fcm | webpush):
  GET  /health                         {"ok": true}
  GET  /setup                          the DevSetup (paths, ids, endpoints)
  GET  /stats                          counters per provider (+ FCM token_requests)
  GET  /requests?provider=P&since=N    recorded requests from index N on, bodies included
  POST /script     {"provider", "token", "status", "reason"?, "retry_after"?, "times"?}
                   or {"provider", "fraction", "status", "reason"?, "retry_after"?, "seed"?}
  POST /unregister {"provider", "token"}
  POST /reset      {"provider"?}                       (all providers when absent)
  POST /latency    {"seconds", "provider"?}
  POST /goaway     {"provider", "after": int | null}   (HTTP/2 fakes: APNs, FCM)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from pushstream.testing.fakes.apns import FakeAPNs
from pushstream.testing.fakes.base import FakeProvider, json_answer
from pushstream.testing.fakes.credentials import DevSetup, generate_dev_setup
from pushstream.testing.fakes.fcm import FakeFCM
from pushstream.testing.fakes.httpserver import Answer, HTTPServer, IncomingRequest
from pushstream.testing.fakes.lean import set_read_coalescing
from pushstream.testing.fakes.webpush import FakeWebPush

log = logging.getLogger(__name__)

READY_FILE = "fakes-ready.json"  # written into the setup dir once everything listens
DEFAULT_PORTS = {"apns": 8443, "fcm": 8081, "webpush": 8082, "control": 8090}


class ControlError(Exception):
    """A bad control request; becomes a 400 (or the given status)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ControlAPI:
    """Request handler for the control port: read and steer the fakes from another process."""

    def __init__(self, fakes: dict[str, FakeProvider], setup: DevSetup) -> None:
        self.fakes = fakes
        self.setup = setup

    async def __call__(self, request: IncomingRequest) -> Answer:
        url = urllib.parse.urlsplit(request.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        try:
            body = orjson.loads(request.body) if request.body else {}
            if not isinstance(body, dict):
                raise ControlError("body must be a JSON object")
            return json_answer(200, self._route(request.method, url.path, query, body))
        except orjson.JSONDecodeError:
            return json_answer(400, {"error": "body is not JSON"})
        except ControlError as exc:
            return json_answer(exc.status, {"error": str(exc)})
        except (KeyError, TypeError, ValueError) as exc:
            return json_answer(400, {"error": f"bad request: {exc!r}"})

    def _route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        if method == "GET":
            if path == "/health":
                return {"ok": True}
            if path == "/setup":
                return self.setup.to_json()
            if path == "/stats":
                return {name: fake.stats() for name, fake in self.fakes.items()}
            if path == "/requests":
                fake = self._fake(query.get("provider"))
                return [record.to_json() for record in fake.records[int(query.get("since", 0)) :]]
        elif method == "POST":
            if path == "/script":
                fake = self._fake(body.get("provider"))
                retry_after = body.get("retry_after")
                if "fraction" in body:
                    fake.script_fraction(
                        float(body["fraction"]),
                        int(body["status"]),
                        body.get("reason"),
                        retry_after=retry_after,
                        seed=int(body.get("seed", 0)),
                    )
                else:
                    fake.script(
                        str(body["token"]),
                        int(body["status"]),
                        body.get("reason"),
                        retry_after,
                        body.get("times"),
                    )
                return {"ok": True}
            if path == "/unregister":
                self._fake(body.get("provider")).unregister(str(body["token"]))
                return {"ok": True}
            if path == "/reset":
                for fake in self._selected(body.get("provider")):
                    fake.reset()
                return {"ok": True}
            if path == "/latency":
                for fake in self._selected(body.get("provider")):
                    fake.latency = float(body["seconds"])
                return {"ok": True}
            if path == "/goaway":
                after = body.get("after")
                self._fake(body.get("provider")).goaway_after = None if after is None else int(after)
                return {"ok": True}
        raise ControlError(f"no route {method} {path}", status=404)

    def _fake(self, provider: object) -> FakeProvider:
        fake = self.fakes.get(str(provider))
        if fake is None:
            raise ControlError(f"provider must be one of {sorted(self.fakes)}")
        return fake

    def _selected(self, provider: object) -> list[FakeProvider]:
        return list(self.fakes.values()) if provider is None else [self._fake(provider)]


async def run_fakes(
    host: str,
    apns_port: int,
    fcm_port: int,
    webpush_port: int,
    control_port: int,
    setup_dir: Path,
    benchmark: bool = False,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Generate/load the dev setup, serve the three fakes and the control API until ``stop`` is set.

    Ports may be 0; the bound ports are then written back into the setup (token_uri, manifest) and into
    ``<setup_dir>/fakes-ready.json``, which appears once everything listens.
    """
    setup_dir = Path(setup_dir)
    ready_file = setup_dir / READY_FILE
    ready_file.unlink(missing_ok=True)
    setup = generate_dev_setup(setup_dir, apns_port=apns_port, fcm_port=fcm_port, webpush_port=webpush_port)
    fakes: dict[str, FakeProvider] = {
        "apns": FakeAPNs(setup, host=host, port=apns_port, benchmark=benchmark),
        "fcm": FakeFCM(setup, host=host, port=fcm_port, benchmark=benchmark),
        "webpush": FakeWebPush(setup, host=host, port=webpush_port, benchmark=benchmark),
    }
    control = ControlAPI(fakes, setup)
    control_server = HTTPServer(control, host=host, port=control_port, http2=False)
    started: list[FakeProvider | HTTPServer] = []
    try:
        for fake in fakes.values():
            await fake.start()
            started.append(fake)
        await control_server.start()
        started.append(control_server)
        ports = {name: fake.port for name, fake in fakes.items()}
        if (apns_port, fcm_port, webpush_port) != (ports["apns"], ports["fcm"], ports["webpush"]):
            setup = generate_dev_setup(
                setup_dir,
                apns_port=ports["apns"],
                fcm_port=ports["fcm"],
                webpush_port=ports["webpush"],
                seed=setup.webpush_seed,
            )
            control.setup = setup
        ready = {
            "pid": os.getpid(),
            **{f"{name}_port": port for name, port in ports.items()},
            "control_port": control_server.port,
            "control_url": f"http://{host}:{control_server.port}",
            "apns_url": fakes["apns"].url,
            "fcm_url": fakes["fcm"].url,
            "webpush_origin": fakes["webpush"].url,
            "benchmark": benchmark,
        }
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(ready, option=orjson.OPT_INDENT_2))
        os.replace(tmp, ready_file)
        log.info("fakes ready: %s", ready)
        await (stop or asyncio.Event()).wait()
    finally:
        ready_file.unlink(missing_ok=True)
        for server in reversed(started):
            await server.stop()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the fakes runner."""
    parser = argparse.ArgumentParser(
        prog="pushstream fakes",
        description="Run local fake APNs, FCM and Web Push servers with a JSON control API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(
            f"--{name}-port",
            type=int,
            default=port,
            help=f"{name} port, 0 = ephemeral (default: %(default)s)",
        )
    parser.add_argument(
        "--setup-dir",
        type=Path,
        default=Path(".pushstream-dev"),
        help="directory for the dev credentials; created or reused (default: %(default)s)",
    )
    parser.add_argument(
        "--benchmark",
        action="store_true",
        help="lean HTTP/2 + HTTP/1.1 path on uvloop: cached auth verdicts, no payload checks or decryption, "
        "counters only (scripts, unregistered tokens, latency and GOAWAY still apply)",
    )
    parser.add_argument(
        "--coalesce-ms",
        type=float,
        default=1.0,
        help="benchmark mode: sleep up to this long after a loop turn that read requests, so clients that write "
        "once per request are read in batches (0 = off; default: %(default)s)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run until SIGINT/SIGTERM."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await run_fakes(
            args.host,
            args.apns_port,
            args.fcm_port,
            args.webpush_port,
            args.control_port,
            args.setup_dir,
            args.benchmark,
            stop=stop,
        )

    if args.benchmark:
        set_read_coalescing(args.coalesce_ms / 1000)
        # uvloop halves the lean HTTP/1.1 path's cost with many connections (Web Push); record mode keeps asyncio's.
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: benchmark mode runs on asyncio's loop (slower for Web Push)")
        else:
            uvloop.run(serve())
            return 0
    asyncio.run(serve())
    return 0
