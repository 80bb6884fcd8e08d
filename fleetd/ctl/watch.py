"""``--watch`` for ``ps`` and ``hosts``: redraw in place whenever the fleet's event stream says so.

Each event (coalesced over a moment) re-reads the list with the command's own filters, so the view is
exactly what the command would print, never a client-side guess; the stream resumes from the list's
``X-Fleet-Event-Id`` so nothing falls between a list and the next event. The list is also re-read every
RESYNC seconds (ages, staleness, a stream that went quiet); against a fleetd without ``/api/v1/events``
every POLL_EVERY seconds, and the title line says which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from fleetd.ctl.client import FleetClient
from fleetd.ctl.errors import ApiFailure, CtlError
from fleetd.ctl.output import Table, make_console
from fleetd.ctl.sse import Frame, fleet_events

__all__ = ["watch_containers", "watch_hosts"]

COALESCE: Final = 0.2  # seconds to gather a burst of events into one re-read
POLL_EVERY: Final = 2.0  # without an event stream
RESYNC: Final = 10.0  # with one: the safety net
TICK: Final = 1.0  # redraw for the ages ("3 seconds ago") even when nothing happens
RETRY: Final = (1.0, 2.0, 5.0, 10.0)

Fetch = Callable[[], Awaitable[tuple[list[dict[str, Any]], str | None]]]
Build = Callable[[list[dict[str, Any]]], Table]


class _Watcher:
    def __init__(self, api: FleetClient, console: Console, title: str, fetch: Fetch, build: Build,
                 params: list[tuple[str, str]]) -> None:  # fmt: skip
        self.api = api
        self.console = console
        self.title = title
        self.fetch = fetch
        self.build = build
        self.params = params
        self.dirty = asyncio.Event()
        self.mode = "connecting to the event stream"
        self.event_id: str | None = None
        self.items: list[dict[str, Any]] = []
        self.updated = 0.0
        self.last_event = ""
        self.next_resync = 0.0

    def view(self) -> Group:
        width = self.console.width
        stamp = time.strftime("%H:%M:%S", time.localtime(self.updated)) if self.updated else "-"
        head = Text(f"{self.title} · {self.api.endpoint.url} · {len(self.items)} rows · {stamp} · {self.mode}",
                    style="dim")  # fmt: skip
        if self.last_event:
            head.append(f" · last event: {self.last_event}", style="dim")
        head.truncate(width, overflow="ellipsis")
        lines = self.build(self.items).lines(width)
        room = max(1, self.console.height - 2)
        if len(lines) > room:
            lines = [*lines[: room - 1], Text(f"… {len(lines) - room + 1} more rows", style="dim")]
        return Group(head, *lines)

    async def events(self) -> None:
        attempt = 0
        while True:
            params = list(self.params)
            if self.event_id:
                params.append(("last_event_id", self.event_id))
            try:
                async for frame in fleet_events(self.api, params, self._opened):
                    attempt = 0
                    if frame.id:
                        self.event_id = frame.id
                    if frame.event == "reset":
                        self.event_id = None
                    self.last_event = _summary(frame)
                    self.dirty.set()
                self.mode = "event stream ended; reconnecting"
            except ApiFailure as exc:
                if exc.status == 404:
                    await self._poll_instead()
                    return
                if exc.status in (401, 403):
                    raise
                self.mode = f"event stream failed ({exc.message}); retrying"
            except CtlError as exc:
                self.mode = f"event stream lost ({exc.message}); retrying"
            self.dirty.set()
            await asyncio.sleep(RETRY[min(attempt, len(RETRY) - 1)])
            attempt += 1

    def _opened(self) -> None:
        self.mode = "live (event stream)"
        self.dirty.set()

    async def _poll_instead(self) -> None:
        self.mode = f"polling every {POLL_EVERY:g}s (this fleetd serves no /api/v1/events)"
        while True:
            self.dirty.set()
            await asyncio.sleep(POLL_EVERY)

    async def refresh(self) -> None:
        items, event_id = await self.fetch()
        self.items, self.updated = items, time.time()
        self.next_resync = time.monotonic() + RESYNC
        if event_id and self.event_id is None:
            self.event_id = event_id

    async def run(self) -> int:
        await self.refresh()
        with Live(self.view(), console=self.console, auto_refresh=False, transient=False,
                  vertical_overflow="crop") as live:  # fmt: skip
            reader = asyncio.create_task(self.events(), name="watch-events")
            try:
                while True:
                    if reader.done():
                        reader.result()  # a refused token ends the watch with its message
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.dirty.wait(), TICK)
                    if time.monotonic() >= self.next_resync:
                        self.dirty.set()
                    if self.dirty.is_set():
                        await asyncio.sleep(COALESCE)
                        self.dirty.clear()
                        try:
                            await self.refresh()
                        except ApiFailure as exc:
                            if exc.status in (401, 403):
                                raise
                            self.mode = f"re-reading failed: {exc.message}"
                        except CtlError as exc:
                            self.mode = f"re-reading failed: {exc.message}"
                    live.update(self.view(), refresh=True)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, CtlError):
                    await reader
        return 0


def _summary(frame: Frame) -> str:
    """``container.added d1/web3 10:03:04``: what the last event was, for the title line."""
    try:
        event = frame.json()
    except CtlError:
        return frame.event
    subject = str(event.get("host", ""))
    if isinstance(event.get("container"), dict):
        subject += "/" + str(event["container"].get("name", ""))
    return f"{frame.event} {subject} {time.strftime('%H:%M:%S')}".replace("  ", " ")


def _need_terminal(console: Console) -> None:
    if not console.is_terminal:
        raise CtlError(
            "--watch redraws a terminal; without one, use the command without --watch", exit_code=2
        )


async def watch_containers(args: argparse.Namespace, api: FleetClient) -> int:
    from fleetd.ctl.ps import container_table, fetch_containers

    console = make_console()
    _need_terminal(console)

    async def fetch() -> tuple[list[dict[str, Any]], str | None]:
        return await fetch_containers(args, api)

    def build(items: list[dict[str, Any]]) -> Table:
        return container_table(items, no_trunc=args.no_trunc)

    params = [("host", h) for h in args.host or []]
    return await _Watcher(api, console, "fleetd ps", fetch, build, params).run()


async def watch_hosts(args: argparse.Namespace, api: FleetClient) -> int:
    from fleetd.ctl.hosts import fetch_hosts, host_table

    console = make_console()
    _need_terminal(console)

    async def fetch() -> tuple[list[dict[str, Any]], str | None]:
        return await fetch_hosts(args, api)

    return await _Watcher(api, console, "fleetd hosts", fetch, host_table, []).run()
