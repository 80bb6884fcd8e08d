"""A test-only hook, loaded by Python at start-up through ``PYTHONPATH`` (the systemd test's drop-in).

When the file named by ``FLEETD_TEST_BLOCK_LOOP_FILE`` appears, the event loop's own thread is made to
sleep for an hour, as a hung loop would: fleetd's watchdog pings stop and systemd must restart the
service. fleetd itself carries no such switch; this file is never installed with it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

_PATH = os.environ.get("FLEETD_TEST_BLOCK_LOOP_FILE")
_run_forever = asyncio.BaseEventLoop.run_forever


def _block() -> None:
    print("test hook: blocking the event loop on purpose", file=sys.stderr, flush=True)
    time.sleep(3600)


def _watch(loop: asyncio.AbstractEventLoop, path: str) -> None:
    while not os.path.exists(path):
        if loop.is_closed():
            return
        time.sleep(0.2)
    loop.call_soon_threadsafe(_block)


def _run_forever_watched(self: asyncio.BaseEventLoop) -> None:
    if _PATH:
        threading.Thread(target=_watch, args=(self, _PATH), name="test-block-loop", daemon=True).start()
    _run_forever(self)


asyncio.BaseEventLoop.run_forever = _run_forever_watched  # type: ignore[method-assign]
