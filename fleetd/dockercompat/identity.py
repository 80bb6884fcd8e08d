"""Which container a reference means, across the fleet.

Order (classic Swarm's, with inventory host names): ``host/ref`` → that host only; a full id;
an exact name; a unique id prefix. A name or prefix that matches on several hosts is a 400
naming them, never a guess. A miss in the aggregate (a container made on the host directly since
the last poll) asks every up host before answering 404 ``No such container: X``.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass

import msgspec

from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.upstream import FleetAccess
from fleetd.fleet.records import ContainerRecord

__all__ = ["Identity", "Target", "no_such_container"]

_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_FULL_ID = re.compile(r"[0-9a-f]{64}")
EXEC_MEMORY = 10_000  # exec ids remembered (an exec lives as long as its process, rarely long)


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    id: str
    name: str = ""

    @property
    def label(self) -> str:
        return f"{self.host}/{self.name or self.id[:12]}"


class _Inspected(msgspec.Struct):
    Id: str
    Name: str = ""


def no_such_container(ref: str) -> DockerAPIError:
    return DockerAPIError(404, f"No such container: {ref}")


def _target(c: ContainerRecord) -> Target:
    return Target(c.host, c.id, c.name)


def _ambiguous(ref: str, found: list[Target]) -> DockerAPIError:
    where = ", ".join(sorted(f"{t.host}/{t.name} ({t.id[:12]})" if t.name else f"{t.host} ({t.id[:12]})" for t in found))
    hosts = sorted({t.host for t in found})
    return DockerAPIError(
        400,
        f"{ref!r} is ambiguous: it matches {len(found)} containers on hosts {', '.join(hosts)}: {where}; "
        f"name one as <host>/<name>, e.g. {hosts[0]}/{ref}",
    )


class Identity:
    def __init__(self, fleet: FleetAccess) -> None:
        self.fleet = fleet
        self._execs: OrderedDict[str, Target] = OrderedDict()

    # -- containers ---------------------------------------------------------------------------

    def split(self, ref: str) -> tuple[str | None, str]:
        """``d2/web4`` → ("d2", "web4"); ``web4`` → (None, "web4"). 404 for anything else."""
        ref = ref.lstrip("/")
        host, sep, rest = ref.partition("/")
        if sep:
            if host not in self.fleet.state or not _REF.fullmatch(rest):
                raise no_such_container(ref)
            return host, rest
        if not _REF.fullmatch(ref):
            raise no_such_container(ref)
        return None, ref

    def lookup(self, ref: str) -> Target | None:
        """From the aggregate alone; None when nothing matches."""
        host, short = self.split(ref)
        records = [self.fleet.record(host)] if host is not None else self.fleet.records()
        containers = [c for r in records for c in r.containers]
        for stage in (
            [c for c in containers if c.id == short] if _FULL_ID.fullmatch(short) else [],
            [c for c in containers if short in c.names],
            [c for c in containers if c.id.startswith(short)],
        ):
            if len(stage) == 1:
                return _target(stage[0])
            if len(stage) > 1:
                raise _ambiguous(ref.lstrip("/"), [_target(c) for c in stage])
        return None

    async def resolve(self, ref: str) -> Target:
        found = self.lookup(ref)
        if found is not None:
            return found
        host, short = self.split(ref)
        hosts = [host] if host is not None else [r.name for r in self.fleet.up_records()]
        answers = await asyncio.gather(*(self._ask(h, short) for h in hosts))
        hits = [t for t in answers if t is not None]
        if len(hits) > 1:
            raise _ambiguous(ref.lstrip("/"), hits)
        if not hits:
            raise no_such_container(ref.lstrip("/"))
        return hits[0]

    async def _ask(self, host: str, ref: str) -> Target | None:
        try:
            up = self.fleet.upstream(host)
            async with up.request("GET", f"/containers/{ref}/json") as resp:
                if resp.status != 200:
                    return None
                found = msgspec.json.decode(await resp.read(), type=_Inspected)
        except Exception:  # down, refused, timed out, garbled: a broken host is just not the owner
            return None
        return Target(host, found.Id, found.Name.lstrip("/"))

    # -- exec instances -----------------------------------------------------------------------

    def remember_exec(self, exec_id: str, target: Target) -> None:
        self._execs[exec_id] = target
        self._execs.move_to_end(exec_id)
        while len(self._execs) > EXEC_MEMORY:
            self._execs.popitem(last=False)

    async def exec_owner(self, exec_id: str) -> Target:
        found = self._execs.get(exec_id)
        if found is not None:
            return found
        if not _REF.fullmatch(exec_id):
            raise DockerAPIError(404, f"No such exec instance: {exec_id}")

        async def ask(host: str) -> Target | None:
            try:
                async with self.fleet.upstream(host).request("GET", f"/exec/{exec_id}/json") as resp:
                    return Target(host, exec_id) if resp.status == 200 else None
            except Exception:
                return None

        hits = [t for t in await asyncio.gather(*(ask(r.name) for r in self.fleet.up_records())) if t]
        if len(hits) != 1:
            raise DockerAPIError(404, f"No such exec instance: {exec_id}")
        self.remember_exec(exec_id, hits[0])
        return hits[0]
