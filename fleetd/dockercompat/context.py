"""The endpoint's long-lived parts (:class:`Service`) and one call's view of them (:class:`Call`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from fleetd.config.docker_api import DockerAPISettings
from fleetd.dockercompat.identity import Identity, Target
from fleetd.dockercompat.security import AuditNote, Guard, Principal
from fleetd.dockercompat.upstream import FleetAccess, Upstream
from fleetd.dockercompat.versions import advertised_version, clamp
from fleetd.fleet.records import HostStatus

__all__ = ["Call", "Service"]

PENDING_PULL_TTL = 600.0


class Service:
    def __init__(self, fleet: FleetAccess, settings: Callable[[], DockerAPISettings]) -> None:
        self.fleet = fleet
        self.identity = Identity(fleet)
        self.guard = Guard(fleet.failures)
        self.settings = settings
        # image → (host, when): a create that found its image missing on the chosen host; the
        # docker CLI's pull that follows goes to the same host.
        self.pending_pulls: dict[str, tuple[str, float]] = {}
        self.event_streams = 0  # `docker events` answers in progress

    def advertised(self) -> str:
        return advertised_version(
            [r.facts.api_version for r in self.fleet.up_records() if r.facts is not None and r.facts.api_version]
        )

    def remember_pull(self, image: str, host: str) -> None:
        now = time.monotonic()
        self.pending_pulls = {k: v for k, v in self.pending_pulls.items() if now - v[1] < PENDING_PULL_TTL}
        self.pending_pulls[image] = (host, now)

    def pull_host(self, image: str) -> str | None:
        found = self.pending_pulls.get(image)
        if found is None or time.monotonic() - found[1] >= PENDING_PULL_TTL:
            return None
        record = self.fleet.state.get(found[0])
        return found[0] if record is not None and record.status is HostStatus.UP else None


@dataclass(slots=True)
class Call:
    request: web.Request
    svc: Service
    version: str  # the caller's API version: from the /vX.Y prefix, else the advertised one
    params: dict[str, str]
    note: AuditNote
    principal: Principal | None = None

    @property
    def fleet(self) -> FleetAccess:
        return self.svc.fleet

    def query(self, key: str) -> str | None:
        return self.request.query.get(key)

    def queries(self) -> dict[str, str]:
        return {k: self.request.query[k] for k in self.request.query}

    async def path_for(self, host: str, path: str) -> str:
        """``path`` with the caller's version moved into ``host``'s window (503 at once for a down host)."""
        self.fleet.upstream(host)
        window = await self.fleet.window(host)
        return f"/v{clamp(self.version, window)}{path}"

    async def target(self, key: str = "ref") -> Target:
        found = await self.svc.identity.resolve(self.params[key])
        self.note.target(found.host, found.id, found.name)
        return found

    def upstream(self, host: str) -> Upstream:
        return self.fleet.upstream(host)
