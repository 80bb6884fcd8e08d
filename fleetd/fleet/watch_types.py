"""What a :class:`~fleetd.fleet.watch.HostWatcher` is given: its settings, the target it writes
through (the fleet state's writer and the poller) and an observer for its counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fleetd.dockerapi import ContainerSummary, DockerError
from fleetd.fleet.safety_net import SafetyNet
from fleetd.fleet.watch_events import Cause

__all__ = ["NoObserver", "WatchObserver", "WatchSettings", "WatchTarget"]


@dataclass(frozen=True, slots=True)
class WatchSettings:
    liveness: float = 15.0  # a /_ping once a connected daemon said nothing for this long; 0: none
    timeout: float = 5.0  # the host's request timeout (open, ping, refresh)
    flush_delay: float = 0.1  # dirty containers are refreshed in batches, this long after the first
    resume_window: float = 2.0  # how long a resumed stream may take to replay its witness
    max_age: float = 600.0  # reconnect (with since) after this long, ±20 %
    backoff_min: float = 0.5
    backoff_max: float = 10.0
    batch: int = 100  # ids per targeted refresh


class WatchTarget(Protocol):
    """What a watcher writes through (the fleet state's writer, and the poller for full lists)."""

    def next_stamp(self, host: str) -> int:
        """A stamp for a request about to be sent (see :class:`~fleetd.fleet.watch_rows.RowClock`)."""
        ...

    def apply_rows(
        self,
        host: str,
        asked: frozenset[str],
        rows: list[ContainerSummary],
        stamp: int,
        causes: Mapping[str, Cause],
        keys: Mapping[str, int] | None = None,
    ) -> None:
        """A targeted refresh: ``rows`` replace the ``asked`` ids; an asked id without a row is gone.
        ``keys``: each row's hash of its JSON element, when the answer was read raw (the poll
        builder's keys, fleet/builder.py)."""
        ...

    async def first_poll(self, host: str) -> None:
        """Return once the host's first poll is done (or soon after, if it never ends)."""
        ...

    async def full_refresh(self, host: str) -> int | None:
        """A full container list now, applied through the writer; rows it changed, None on failure."""
        ...

    def wake(self, host: str) -> None:
        """Poll the host soon without discarding a poll in flight (it answers again)."""
        ...

    def stream_lost(self, host: str, error: DockerError) -> None:
        """The stream broke and the daemon does not answer: the host is down now."""
        ...

    def resynced(self, host: str, gap: bool) -> None:
        """The stream is back; ``gap``: events were lost and a full list repaired the rows."""
        ...

    def want_info(self, host: str) -> None:
        """The host's next poll asks ``/info`` (the stream reconnected, the daemon reloaded)."""
        ...

    def attach(self, host: str, net: SafetyNet | None) -> None:
        """The host's polls may be lean while ``net`` (its watcher) says its stream is healthy."""
        ...


class WatchObserver(Protocol):
    def count(self, host: str, what: str, n: int = 1) -> None: ...


class NoObserver:
    def count(self, host: str, what: str, n: int = 1) -> None:
        return None
