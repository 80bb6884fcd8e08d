"""The fleet's records: per-host health and the containers/images last seen on it."""

from __future__ import annotations

import enum
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from fleetd.config.model import HostSettings
from fleetd.dockerapi.models import ContainerSummary, ImageSummary, Port, SystemInfo
from fleetd.util.shared import shared
from fleetd.util.timefmt import rfc3339

__all__ = [
    "CONTAINER_FIELDS",
    "ContainerDiff",
    "ContainerRecord",
    "ContainerTally",
    "EngineFacts",
    "Finding",
    "HostRecord",
    "HostStatus",
    "ImageRecord",
    "PortRecord",
    "changed_fields",
    "container_record",
    "diff_containers",
    "image_record",
    "places_of",
]


class HostStatus(enum.StrEnum):
    UNKNOWN = "unknown"  # no answer yet
    UP = "up"
    DOWN = "down"  # no usable HTTP answer: refused, reset, timeout, TLS failure
    ERROR = "error"  # answered, but unusably: non-2xx, invalid JSON, wrong shape
    DISABLED = "disabled"  # in the inventory with enabled: false


# Records are gc=False: they never form reference cycles, and tens of thousands of tracked
# instances would make every pass of the cyclic garbage collector walk them all.
class PortRecord(msgspec.Struct, frozen=True, gc=False):
    private_port: int
    type: str
    ip: str | None = None
    public_port: int | None = None


class ContainerRecord(msgspec.Struct, frozen=True, gc=False):
    host: str
    id: str
    name: str
    names: list[str]
    image: str
    image_id: str
    command: str
    state: str
    status: str
    health: str
    created: str | None
    labels: dict[str, str]
    ports: list[PortRecord]
    observed_at: str | None
    stale: bool = False


#: The fields whose change is announced (ContainerChanged.fields); observed_at moves every poll.
CONTAINER_FIELDS: tuple[str, ...] = (
    "name",
    "names",
    "image",
    "image_id",
    "command",
    "state",
    "status",
    "health",
    "created",
    "labels",
    "ports",
)


def places_of(
    records: Sequence[ContainerRecord], rows: Iterable[tuple[str, ContainerRecord | None]]
) -> list[int] | None:
    """Where each new row (by container id) takes the place of that container's record: the same
    id and name, so the order by name holds and nothing is sorted again. None when one cannot: a
    row new or gone (None), a rename, or ``records`` holding an id twice."""
    pos = {c.id: i for i, c in enumerate(records)}
    if len(pos) != len(records):
        return None
    out: list[int] = []
    for cid, row in rows:
        i = pos.get(cid)
        if i is None or row is None or row.name != records[i].name:
            return None
        out.append(i)
    return out


def changed_fields(old: ContainerRecord, new: ContainerRecord) -> tuple[str, ...]:
    return tuple(f for f in CONTAINER_FIELDS if getattr(old, f) != getattr(new, f))


class Finding(msgspec.Struct, frozen=True, omit_defaults=True):
    """A security finding about a host (see fleet/findings.py for the codes)."""

    code: str
    message: str
    path: str | None = None
    not_after: str | None = None


class ImageRecord(msgspec.Struct, frozen=True, gc=False):
    id: str
    tags: list[str]
    digests: list[str]
    size: int
    created: str | None
    labels: dict[str, str]


class EngineFacts(msgspec.Struct, frozen=True, gc=False):
    engine_id: str
    name: str
    server_version: str
    api_version: str
    operating_system: str
    os_type: str
    kernel_version: str
    architecture: str
    ncpu: int
    mem_total: int
    storage_driver: str
    # podman 4.3 answers a new ID on every /info: such an ID identifies nothing, so it is not kept
    # (engine_id ""), never taken for a clone's (duplicate detection) and never a change in diffs.
    engine_id_volatile: bool = False

    @classmethod
    def from_info(cls, info: SystemInfo, api_version: str, *, volatile_id: bool = False) -> EngineFacts:
        intern = sys.intern  # versions, OS, kernel, driver: the same on many hosts
        return cls(
            engine_id="" if volatile_id else info.ID,
            engine_id_volatile=volatile_id,
            name=info.Name,
            server_version=intern(info.ServerVersion),
            api_version=intern(api_version),
            operating_system=intern(info.OperatingSystem),
            os_type=intern(info.OSType),
            kernel_version=intern(info.KernelVersion),
            architecture=intern(info.Architecture),
            ncpu=info.NCPU,
            mem_total=info.MemTotal,
            storage_driver=intern(info.Driver),
        )


_HEALTH_RE = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def _health(c: ContainerSummary) -> str:
    if c.Health is not None and c.Health.Status in ("healthy", "unhealthy", "starting"):
        return _intern(c.Health.Status)
    m = _HEALTH_RE.search(c.Status)
    if m is None:
        return "none"
    return "starting" if m.group(1) == "health: starting" else _intern(m.group(1))


# What many containers across the fleet share (label sets, names, images, commands, port mappings)
# is kept once: interned strings, and one dict or list per distinct value. Records never mutate
# their lists and dicts, so sharing them is safe; the caches start over past SHARED_MAX entries (fleetd/util/shared.py).
_intern = sys.intern
_PORTS: dict[tuple[int, str, str | None, int | None], PortRecord] = {}
_PORT_LISTS: dict[tuple[PortRecord, ...], list[PortRecord]] = {}
_LABELS: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
_NAME_LISTS: dict[str, list[str]] = {}  # keyed by the interned name itself: no other key object


def _port_record(key: tuple[int, str, str | None, int | None]) -> PortRecord:
    private, kind, ip, public = key
    return PortRecord(
        private_port=private, type=_intern(kind), ip=_intern(ip) if ip is not None else None, public_port=public
    )


def _port(p: Port) -> PortRecord:
    return shared(_PORTS, (p.PrivatePort, p.Type, p.IP, p.PublicPort), _port_record)


def _ports(ports: Sequence[Port] | None) -> list[PortRecord]:
    """One list per distinct set of port mappings (also the empty one)."""
    return shared(_PORT_LISTS, tuple([_port(p) for p in ports]) if ports else (), list)


def _labels(labels: dict[str, str] | None) -> dict[str, str]:
    """One dict per distinct label set (the same stack on many hosts; also the empty one)."""
    key = tuple(labels.items()) if labels else ()
    return shared(_LABELS, key, lambda items: {_intern(k): _intern(v) for k, v in items})


def _names(names: Sequence[str] | None) -> list[str]:
    """Names without their leading ``/``, interned; one list per distinct single name (the usual
    case: the same stack's containers have the same names on many hosts)."""
    if not names:
        return []
    if len(names) > 1:
        return [_intern(n.lstrip("/")) for n in names]
    return shared(_NAME_LISTS, _intern(names[0].lstrip("/")), lambda name: [name])


def container_record(host: str, c: ContainerSummary, observed_at: str | None) -> ContainerRecord:
    names = _names(c.Names)
    return ContainerRecord(
        host=host,
        id=c.Id,
        name=names[0] if names else c.Id[:12],
        names=names,
        image=_intern(c.Image),
        image_id=_intern(c.ImageID),
        command=_intern(c.Command),
        state=_intern(c.State),
        status=_intern(c.Status),
        health=_health(c),
        created=rfc3339(c.Created) if c.Created else None,
        labels=_labels(c.Labels),
        ports=_ports(c.Ports),
        observed_at=observed_at,
    )


@dataclass(slots=True)
class ContainerDiff:
    """How one host's containers differ from what was there before."""

    added: list[ContainerRecord] = field(default_factory=list)
    changed: list[tuple[ContainerRecord, tuple[str, ...]]] = field(default_factory=list)  # new, fields
    removed: list[ContainerRecord] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def diff_containers(old: tuple[ContainerRecord, ...], new: tuple[ContainerRecord, ...]) -> ContainerDiff:
    """The full comparison, for when no builder knows what the state holds (after other writers)."""
    before = {c.id: c for c in old}
    diff = ContainerDiff()
    replace = msgspec.structs.replace
    for c in new:
        prev = before.pop(c.id, None)
        if prev is None:
            diff.added.append(c)
        # Records of one container seen by two polls differ at least in observed_at: compared
        # without it in C first (~0.3 µs against ~2 µs field by field), most are equal.
        elif (
            prev is not c
            and replace(prev, observed_at=c.observed_at) != c
            and (fields := changed_fields(prev, c))
        ):
            diff.changed.append((c, fields))
    diff.removed.extend(before.values())
    return diff


_STRING_LISTS: dict[tuple[str, ...], list[str]] = {}


def _strings(values: list[str]) -> list[str]:
    """One list of interned strings per distinct list (image tags and digests)."""
    return shared(_STRING_LISTS, tuple(values), lambda key: [_intern(v) for v in key])


def image_record(i: ImageSummary) -> ImageRecord:
    """The same images are on many hosts: their ids, tags, digests and label sets are kept once."""
    return ImageRecord(
        id=_intern(i.Id),
        tags=_strings([t for t in (i.RepoTags or ()) if t != "<none>:<none>"]),
        digests=_strings([d for d in (i.RepoDigests or ()) if d != "<none>@<none>"]),
        size=i.Size,
        created=rfc3339(i.Created) if i.Created else None,
        labels=_labels(i.Labels),
    )


@dataclass(frozen=True, slots=True)
class ContainerTally:
    """One host's containers counted by state and by image (for summaries)."""

    by_state: Counter[str]
    by_image: Counter[str]

    @classmethod
    def of(cls, containers: tuple[ContainerRecord, ...]) -> ContainerTally:
        return cls(Counter(c.state for c in containers), Counter(c.image for c in containers))


@dataclass(slots=True, eq=False)
class HostRecord:
    """What fleetd knows about one host. Written only through FleetState's writer methods."""

    settings: HostSettings
    status: HostStatus = HostStatus.UNKNOWN
    last_seen: float | None = None  # wall clock of the last successful poll
    last_attempt: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    poll_duration: float | None = None  # seconds, last poll (success or failure)
    facts: EngineFacts | None = None
    info_raw: msgspec.Raw | None = None
    containers: tuple[ContainerRecord, ...] = ()
    images: tuple[ImageRecord, ...] | None = None  # None: never listed
    images_seen: float | None = None
    polls: int = 0
    polls_overdue: int = 0  # times the next poll did not start within timeout + 1 s of being due
    first_poll_done: bool = False
    changed_at: float | None = None  # when status last changed
    findings: tuple[Finding, ...] = ()  # written by FindingsWatch
    _tally: ContainerTally | None = field(default=None, init=False, repr=False)
    _tallied: tuple[ContainerRecord, ...] | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.settings.name

    def stale_after(self) -> float:
        return 2 * self.settings.interval + self.settings.timeout

    def is_stale(self, now: float) -> bool:
        """Data is stale when the last poll failed or the last success is too old."""
        if self.last_seen is None:
            return False  # there is no data to be stale
        if self.status is not HostStatus.UP:
            return True
        return now - self.last_seen > self.stale_after()

    def tally(self) -> ContainerTally:
        """Counts of the current containers, computed once per poll result and only when asked."""
        if self._tally is None or self._tallied is not self.containers:
            self._tally = ContainerTally.of(self.containers)
            self._tallied = self.containers
        return self._tally

    @property
    def insecure_transport(self) -> bool:
        return any(f.code == "insecure_transport" for f in self.findings)

    @property
    def running(self) -> int:
        return self.tally().by_state["running"]
