"""The liveness half of a host's event watcher (:class:`~fleetd.fleet.watch.HostWatcher`).

A ``/_ping`` once the daemon has said nothing (no event, no answer) for ``liveness`` seconds catches
a daemon frozen while its kernel still holds the TCP connections (``kill -STOP``): down within
liveness + timeout of its last sign of life. The checks run from the fleet's
:class:`~fleetd.fleet.liveness.LivenessWheel`; a ping goes over the raw pinger when the host has one,
else through the client.
"""

from __future__ import annotations

import asyncio
import functools

import structlog

from fleetd.dockerapi import DockerClient, DockerError, EngineProtocolError, EngineTimeout
from fleetd.dockerapi.pinger import RawPinger, Result
from fleetd.fleet.watch_types import WatchSettings, WatchTarget
from fleetd.util.grid import grid_tick

__all__ = ["LivenessChecks", "liveness_tick"]

log = structlog.get_logger("fleetd.watch")


class LivenessChecks:
    """Mixed into HostWatcher, which sets every attribute declared here."""

    host: str
    client: DockerClient
    pinger: RawPinger | None
    target: WatchTarget
    settings: WatchSettings
    connected: bool
    reported_down: bool
    _stopped: bool
    _tick: float
    _liveness_factor: float
    _alive_at: float
    _ping_seq: int
    _ping_sent: float | None
    _ping_task: asyncio.Task[None] | None

    def reconnect(self) -> None:
        raise NotImplementedError  # HostWatcher.reconnect

    def _period(self) -> float:
        """Silence that earns a ping: ``liveness``, spread over the fleet, less two ticks of the
        wheel (the ping and its verdict each run up to one tick late), so a frozen daemon is
        down within ``liveness + timeout`` of its last sign of life."""
        tick = self._tick
        return max(tick, self.settings.liveness * self._liveness_factor - 2 * tick)

    def check(self, now: float) -> float | None:
        """The wheel's call at this watcher's deadline: ping, judge a ping, or say when to look again."""
        if self._stopped:
            return None
        period, timeout = self._period(), self.settings.timeout
        sent = self._ping_sent
        if sent is not None:
            if now < sent + timeout:
                return sent + timeout
            self._ping_sent = None  # no answer in time
            self._ping_seq += 1
            if self.pinger is not None:
                self.pinger.reset()  # the connection is stuck on it: the next exchange gets a new one
            self._ping_failed(EngineTimeout(f"no answer within {timeout:g}s to GET /_ping on {self.client.url}",
                                            url=self.client.url))  # fmt: skip
            return now + period
        due = self._alive_at + period
        if due > now:
            return due
        if not self.connected or self.reported_down:
            return now + period  # (re)connecting: the stream going live counts as a sign
        self._ping_sent = now
        self._ping_seq += 1
        seq = self._ping_seq
        if self.pinger is not None:
            self.pinger.send_ping(functools.partial(self._pong, seq))
        else:
            self._ping_task = asyncio.ensure_future(self._client_ping(seq))
        return now + timeout

    async def _client_ping(self, seq: int) -> None:
        try:
            await self.client.system.ping(timeout=self.settings.timeout)
        except DockerError as exc:
            self._pong(seq, exc)
            return
        self._pong(seq, (200, b""))

    def _pong(self, seq: int, result: Result) -> None:
        if seq != self._ping_seq or self._ping_sent is None:
            return  # judged already (timed out), or an older ping's late answer
        self._ping_sent = None
        if isinstance(result, DockerError):
            self._ping_failed(result)
        elif result[0] != 200:
            self._ping_failed(EngineProtocolError(f"GET /_ping on {self.client.url} answered {result[0]}",
                                                  url=self.client.url))  # fmt: skip
        else:
            self._alive_at = asyncio.get_running_loop().time()

    def _ping_failed(self, exc: DockerError) -> None:
        if self.connected and not self.reported_down:
            self.reported_down = True
            log.info("liveness check failed", host=self.host, error=str(exc))
            self.target.stream_lost(self.host, exc)
            self.reconnect()


def liveness_tick(liveness: float) -> float:
    """The wheel's bucket width for a liveness period (the fleet's grid, fleetd/util/grid.py)."""
    return grid_tick(liveness)
