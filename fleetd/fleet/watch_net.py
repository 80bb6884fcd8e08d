"""The safety-net side of a host's event watcher (:class:`~fleetd.fleet.watch.HostWatcher`): what the
host's periodic poll asks of it (:class:`~fleetd.fleet.safety_net.SafetyNet`), and the drift judgement.

While the stream is live and synced the poll is lean (the container list alone); its full polls
(``/info``, images) go over the same kept connection as the liveness ping and the targeted refreshes
(no pooled connection, which idles out between polls a minute or more apart, to open again each time).
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from fleetd.dockerapi import DockerClient, ImageSummary, SystemInfo
from fleetd.dockerapi.exchange import Done
from fleetd.dockerapi.pinger import RawPinger, images, info_raw, list_all_body
from fleetd.fleet.watch_events import Cause
from fleetd.fleet.watch_types import WatchObserver

__all__ = ["NetSide"]

log = structlog.get_logger("fleetd.watch")


class NetSide:
    """Mixed into HostWatcher, which sets every attribute declared here."""

    host: str
    client: DockerClient
    pinger: RawPinger | None
    observer: WatchObserver
    connected: bool
    synced_at: float | None
    reported_down: bool
    _alive_at: float
    _dirty: dict[str, Cause]
    _recent: dict[str, float]

    def reconnect(self) -> None:
        raise NotImplementedError  # HostWatcher.reconnect

    def lean(self) -> bool:
        """The stream is live and synced: a safety-net poll may leave ``/info`` out."""
        return self.connected and self.synced_at is not None and not self.reported_down

    async def list_body(self, timeout: float) -> bytes:
        return await list_all_body(self.pinger, self.client, timeout=timeout)

    async def info_raw(self, timeout: float) -> tuple[SystemInfo, msgspec.Raw]:
        return await info_raw(self.pinger, self.client, timeout=timeout)

    async def images(self, timeout: float) -> list[ImageSummary]:
        return await images(self.pinger, self.client, timeout=timeout)

    def send_list(self, done: Done) -> bool:
        version = self.client.api_version
        if self.pinger is None or version is None:
            return False
        self.pinger.send(f"/v{version}/containers/json?all=1".encode(), self.client.limits.containers, done)
        return True

    def cancel_list(self, done: Done) -> None:
        if self.pinger is not None:
            self.pinger.cancel(done)

    def answered(self) -> None:
        self._alive_at = asyncio.get_running_loop().time()

    def unexplained(self, ids: list[str] | tuple[str, ...], sent_at: float) -> list[str]:
        """Of the rows a full poll (sent at loop time ``sent_at``) found different, those the
        stream should have told about: it was live before the poll was sent, and no event
        about them is pending or arrived within the last two seconds."""
        if not self.connected or self.synced_at is None or self.synced_at > sent_at:
            return []  # a poll sent before the stream was live and synced proves nothing
        now = asyncio.get_running_loop().time()
        return [cid for cid in ids if cid not in self._dirty and now - self._recent.get(cid, -1e9) > 2.0]

    def drift(self, ids: list[str] | tuple[str, ...], sent_at: float) -> int:
        """Count drift and force a reconnect (the stream may be silently dead)."""
        unexplained = self.unexplained(ids, sent_at)
        if unexplained:
            self.observer.count(self.host, "drift", len(unexplained))
            log.warning("events drift: the poll found changes no event told of", host=self.host,
                        containers=[c[:12] for c in unexplained[:5]], count=len(unexplained))  # fmt: skip
            self.reconnect()
        return len(unexplained)
