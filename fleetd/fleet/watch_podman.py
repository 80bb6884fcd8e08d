"""podman's health events, made to behave like dockerd's (one fleet frame per health transition).

What podman 4.3.1 does (measured in the lab, `podman healthcheck run` by hand: it needs no systemd):

* its compat ``GET /containers/json`` never tells health: ``Status`` is ``"Up 5 seconds"`` and there
  is no ``Health`` member, whatever the check says; only ``GET /containers/{id}/json`` has
  ``State.Health.Status``;
* every probe publishes ``health_status`` when it *starts*, with the previous status in
  ``HealthStatus``, then ``exec_died`` when it ends (``engine-events.md`` P3).

So, on a podman host, a ``health_status`` marks the container dirty and remembers that a probe runs;
an ``exec_died`` of that container within a few seconds marks it dirty again (the result is known then;
podman's event file is read in bursts, so a user's ``exec_died`` may come first: each one counts); and
the targeted
refresh of a running container whose cause is a health event or a (re)start asks
``/containers/{id}/json`` for its health and puts it into the row. A poll's list, which says nothing
of health, keeps the health the row has (:func:`fleetd.fleet.watch_rows.keep_health`). A probe
that does not change the health changes no row, hence no frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

import msgspec

from fleetd.dockerapi import ContainerSummary, DockerClient
from fleetd.dockerapi.events import EngineEvent
from fleetd.dockerapi.models import ContainerHealth

__all__ = ["PodmanHealth"]

#: Causes after which a podman row's health is asked for (a restart resets it to "starting").
_ASK_AFTER: Final = frozenset({"health_status", "start", "restart", "unpause"})
_PROBES_KEPT: Final = 1024
_PROBE_WINDOW: Final = 5_000_000_000  # ns on the daemon's clock: an exec_died this soon may end the probe


class PodmanHealth:
    def __init__(self) -> None:
        self._probing: dict[str, int] = {}  # container id → timeNano of its last health_status

    def probe_ended(self, event: EngineEvent) -> str | None:
        """The container whose health probe this event may end (it is dirty again), else None."""
        action = event.action
        cid = event.Actor.ID
        if action == "health_status" and cid:
            self._probing.pop(cid, None)
            self._probing[cid] = event.time_nano
            if len(self._probing) > _PROBES_KEPT:
                self._probing.pop(next(iter(self._probing)))
        elif action == "exec_died" and cid in self._probing:
            if event.time_nano - self._probing[cid] <= _PROBE_WINDOW:
                return cid
            del self._probing[cid]
        return None

    async def fill(
        self,
        client: DockerClient,
        rows: list[ContainerSummary],
        causes: Mapping[str, str],
        timeout: float,
    ) -> list[ContainerSummary]:
        """``rows`` with ``Health`` from ``/containers/{id}/json`` for the running ones whose cause
        asks for it (``causes``: id → upstream action). A failed inspect leaves the row as listed."""
        wanted = [i for i, r in enumerate(rows) if r.State == "running" and causes.get(r.Id) in _ASK_AFTER]
        if not wanted:
            return rows
        answers = await asyncio.gather(
            *(client.containers.inspect(rows[i].Id, timeout=timeout) for i in wanted), return_exceptions=True
        )
        out = list(rows)
        for i, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, asyncio.CancelledError):
                raise answer
            if isinstance(answer, BaseException):  # DockerError: the row stays as listed
                continue
            health = answer.State.Health if answer.State is not None else None
            if health is not None and health.Status:
                out[i] = msgspec.structs.replace(
                    out[i], Health=ContainerHealth(health.Status, health.FailingStreak)
                )
        return out
