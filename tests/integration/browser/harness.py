"""fleetd and fake Engines on an event loop in a background thread, for browser tests written with
Playwright's sync API (which owns the main thread's loop).

    bg = Background()
    server = bg.run(serve(settings))         # fleetd's app on 127.0.0.1:<port 0>
    engine = bg.run(FakeEngine(docker_29()).start())
    ...
    bg.run(server.aclose()); bg.close()
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from fleetd.api.app import create_app
from fleetd.config.model import Settings
from fleetd.runtime import Fleet

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "Background", "Served", "browser_unavailable_reason", "serve"]

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_unavailable_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK) and shutil.which("chromium") is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


class Background:
    """An asyncio loop in a daemon thread; ``run`` submits a coroutine and waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fleetd-bg", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Served:
    runner: web.AppRunner
    port: int
    fleet: Fleet

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def aclose(self) -> None:
        try:
            await self.runner.cleanup()
        finally:
            await self.fleet.aclose()


async def serve(settings: Settings) -> Served:
    """fleetd's whole app (poller, auth, snapshots, dashboard) on a loopback port chosen by the kernel."""
    fleet = Fleet(settings)
    await fleet.start()
    runner = web.AppRunner(create_app(fleet), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return Served(runner, port, fleet)
