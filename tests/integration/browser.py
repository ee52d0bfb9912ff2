"""Debian's Chromium, headless, driven over the Chrome DevTools Protocol (a websocket, via aiohttp): just enough
to load a page, type, click and read what it shows. Installed by scripts/install-test-deps."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from pushstream.processes import die_with_parent


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise AssertionError("chromium is not installed: run scripts/install-test-deps (make test does)")
    return path


class Browser:
    """One headless Chromium process with one page."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.process: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self.console: list[str] = []

    async def __aenter__(self) -> Browser:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _start(self) -> None:
        self.profile.mkdir(parents=True, exist_ok=True)
        log = (self.profile / "chromium.log").open("ab")
        self.process = subprocess.Popen(
            [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "about:blank"], stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chromium did not start; see {self.profile / 'chromium.log'}")
            await asyncio.sleep(0.1)  # polling for the port file, not synchronisation
        port = int(port_file.read_text().split()[0])
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = await answer.json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Runtime.enable")
        await self.send("Page.enable")

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events that arrive meanwhile are kept only as console lines."""
        assert self.ws is not None
        ident = next(self._ids)
        # DevTools takes text frames only.
        await self.ws.send_str(orjson.dumps({"id": ident, "method": method, "params": params}).decode())
        while True:
            message = await asyncio.wait_for(self.ws.receive(), timeout=30)
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise AssertionError(f"devtools connection closed: {message}")
            data = orjson.loads(message.data)
            if data.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in data["params"]["args"]))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(f"exception: {data['params']['exceptionDetails']}")
            if data.get("id") == ident:
                if "error" in data:
                    raise AssertionError(f"{method}: {data['error']}")
                result: dict[str, Any] = data["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 30, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"page never showed {what or expression}; console: {self.console[-10:]}")
            await asyncio.sleep(0.1)  # polling interval

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete' && document.body.dataset.ready === '1'",
                            what="the page loaded and its script ran")

    async def type_into(self, element_id: str, text: str) -> None:
        """Focus an input, clear it and type ``text`` as keyboard input."""
        await self.evaluate(f"(() => {{ const e = document.getElementById({orjson.dumps(element_id).decode()});"
                            " e.focus(); e.select(); return true; })()")
        await self.send("Input.insertText", text=text)

    async def click(self, element_id: str) -> None:
        await self.evaluate(f"document.getElementById({orjson.dumps(element_id).decode()}).click()")

    async def text(self, element_id: str) -> str:
        value = await self.evaluate(f"document.getElementById({orjson.dumps(element_id).decode()}).textContent")
        return str(value)

    async def rows(self, table_id: str) -> list[list[str]]:
        """The cells' text of a table's body rows."""
        rows: list[list[str]] = await self.evaluate(
            f"Array.from(document.getElementById({orjson.dumps(table_id).decode()}).tBodies[0].rows)"
            ".map(r => Array.from(r.cells).map(c => c.textContent))")
        return rows
