"""The state's change signal turned into the fleet feed: one numbered FleetEvent per change that a
client can act on (container added/changed/removed, host status, host resynced)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from fleetd.fleet.changes import (
    Change,
    ContainerAdded,
    ContainerChanged,
    ContainerRemoved,
    HostChanged,
    HostResynced,
    Lagged,
)
from fleetd.fleet.feed import FleetFeed
from fleetd.fleet.state import FleetState

__all__ = ["FeedPump", "only_elapsed_time"]

log = structlog.get_logger("fleetd.feed")

RenderHost = Callable[[str], dict[str, Any] | None]


def only_elapsed_time(change: ContainerChanged) -> bool:
    """A poll's change of nothing but the status text's elapsed time ("Up 3 minutes" → "Up 4 minutes")."""
    return change.fields == ("status",) and change.action is None


class FeedPump:
    def __init__(self, state: FleetState, feed: FleetFeed, *, maxsize: int = 4096) -> None:
        self.state = state
        self.feed = feed
        self.maxsize = maxsize
        #: Set by the HTTP layer: the host's item of GET /api/v1/hosts, for host events.
        self.render_host: RenderHost | None = None
        #: Told every change first, in order (the watchers wait for hosts' first polls with it).
        self.on_change: Callable[[Change], None] | None = None

    def _record(self, host: str) -> dict[str, Any] | None:
        return self.render_host(host) if self.render_host is not None else None

    def publish(self, change: Change, at: float) -> None:
        feed = self.feed
        if isinstance(change, ContainerChanged):
            if not only_elapsed_time(change):
                feed.publish("container.changed", change.host, time=at, container=change.container,
                             fields=change.fields, action=change.action, exit_code=change.exit_code)  # fmt: skip
        elif isinstance(change, ContainerAdded):
            feed.publish("container.added", change.host, time=at, container=change.container,
                         action=change.action, exit_code=change.exit_code)  # fmt: skip
        elif isinstance(change, ContainerRemoved):
            feed.publish("container.removed", change.host, time=at, container=change.container,
                         action=change.action, exit_code=change.exit_code)  # fmt: skip
        elif isinstance(change, HostChanged):
            feed.publish("host.changed", change.host, time=at, before=change.before.value,
                         after=change.after.value, record=self._record(change.host))  # fmt: skip
        elif isinstance(change, HostResynced):
            feed.publish(
                "host.resynced", change.host, time=at, gap=change.gap, record=self._record(change.host)
            )

    async def run(self) -> None:
        with self.state.changes.subscribe(maxsize=self.maxsize) as sub:
            while True:
                item = await sub.get()
                if isinstance(item, Lagged):
                    # Changes are lost for every client: make them all re-list.
                    log.warning(
                        "fleet feed fell behind the state's changes; clients are reset", dropped=item.dropped
                    )
                    self.feed.renew_epoch()
                    continue
                on_change = self.on_change
                if on_change is not None:
                    for change in item.changes:
                        on_change(change)
                if self.feed.quiet:
                    continue  # nobody subscribed and no id handed out: no event could reach anyone
                at = item.time or time.time()
                for change in item.changes:
                    self.publish(change, at)
