"""Answers from the aggregate: ``/containers/json``, ``/info``, ``/version``, ``/images/json``, and
the ``Node`` object added to a daemon's inspect answer. Hosts are named as in the inventory."""

from __future__ import annotations

import functools
import platform
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import msgspec

from fleetd.dockerapi.apiversion import parse_api_version
from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.filters import CONTAINER_FILTERS, Filters, match_container, parse_filters
from fleetd.dockercompat.identity import Identity
from fleetd.dockercompat.upstream import FleetAccess
from fleetd.dockercompat.versions import FLEETD_MIN_API
from fleetd.fleet.records import ContainerRecord, HostRecord, HostStatus
from fleetd.fleet.state import label_matches
from fleetd.ops.images import image_matches
from fleetd.util.timefmt import parse_rfc3339, rfc3339

__all__ = ["FLEETD_VERSION", "Summary", "container_list", "fleet_info", "fleet_version", "image_list", "node_object"]

FLEETD_VERSION = "0.1.0"
Json = dict[str, Any]


@functools.lru_cache(maxsize=65_536)
def _epoch(text: str | None) -> int:
    """Unix seconds of a record's RFC 3339 time (cached: a list answer parses thousands)."""
    if not text:
        return 0
    try:
        return int(parse_rfc3339(text))
    except ValueError:
        return 0


class _Port(msgspec.Struct, omit_defaults=True):
    PrivatePort: int
    Type: str
    IP: str | None = None
    PublicPort: int | None = None


class _NetworkMode(msgspec.Struct):
    NetworkMode: str = "default"


class _Networks(msgspec.Struct):
    Networks: dict[str, Any] = msgspec.field(default_factory=dict)


class Summary(msgspec.Struct, omit_defaults=True):
    """One item of ``GET /containers/json`` (moby's ContainerSummary, the fields fleetd knows)."""

    Id: str
    Names: list[str]
    Image: str
    ImageID: str
    Command: str
    Created: int
    Ports: list[_Port]
    Labels: dict[str, str]
    State: str
    Status: str
    HostConfig: _NetworkMode
    NetworkSettings: _Networks
    Mounts: list[Any]
    SizeRw: int | None = None
    SizeRootFs: int | None = None


def _truthy(value: str | None) -> bool:
    # moby and classic Swarm: "", 0, no, false, none are false
    return value is not None and value.strip().lower() not in ("", "0", "no", "false", "none")


def _address(record: HostRecord) -> tuple[str, str]:
    url = record.settings.url
    if url.startswith("unix://"):
        return "", url
    parts = urlsplit(url)
    return parts.hostname or "", f"{parts.hostname}:{parts.port}"


def node_object(record: HostRecord) -> Json:
    """classic Swarm's ``Node`` (so ``docker inspect -f '{{.Node.Name}}'`` works)."""
    ip, addr = _address(record)
    facts = record.facts
    return {
        "ID": facts.engine_id if facts else "",
        "IP": ip,
        "Addr": addr,
        "Name": record.name,
        "Cpus": facts.ncpu if facts else 0,
        "Memory": facts.mem_total if facts else 0,
        "Labels": dict(record.settings.labels),
    }


def _summary(c: ContainerRecord, record: HostRecord, created: int, size: bool) -> Summary:
    status = c.status
    if record.status is not HostStatus.UP:
        status = f"Host {record.status.value.capitalize()} (last seen: {c.status or c.state})"
    prefix = f"/{record.name}/"
    return Summary(
        Id=c.id,
        Names=[prefix + n for n in (c.names or [c.name])],
        Image=c.image,
        ImageID=c.image_id,
        Command=c.command,
        Created=created,
        Ports=[_Port(p.private_port, p.type, p.ip, p.public_port) for p in c.ports],
        Labels=c.labels,
        State=c.state,
        Status=status,
        HostConfig=_NetworkMode(),
        NetworkSettings=_Networks(),
        Mounts=[],
        SizeRw=0 if size else None,
        SizeRootFs=0 if size else None,
    )


def container_list(fleet: FleetAccess, identity: Identity, query: dict[str, str]) -> list[Summary]:
    """``GET /containers/json``: newest first across the fleet, then ``limit``."""
    filters: Filters = parse_filters(query.get("filters"), CONTAINER_FILTERS)
    try:
        limit = int(query.get("limit") or 0)
    except ValueError:
        raise DockerAPIError(400, f"invalid limit {query.get('limit')!r}") from None
    everything = (
        _truthy(query.get("all")) or limit > 0 or any(k in filters for k in ("before", "since", "status", "exited"))
    )
    bounds: dict[str, int] = {}
    for key in ("before", "since"):
        for ref in filters.get(key, []):
            target = identity.lookup(ref)
            if target is None:
                raise DockerAPIError(404, f"No such container: {ref}")
            owner = fleet.record(target.host)
            found = next(c for c in owner.containers if c.id == target.id)
            bounds[key] = _epoch(found.created)
    rows: list[tuple[int, str, ContainerRecord, HostRecord]] = []
    for record in fleet.records():
        live = record.status is HostStatus.UP
        if not live and not everything:
            continue  # a down host's containers are last known, not running: only with -a
        for c in record.containers:
            if not everything and c.state not in ("running", "paused", "restarting"):  # moby: Running
                continue
            if not match_container(c, filters):
                continue
            created = _epoch(c.created)
            if "before" in bounds and created >= bounds["before"]:
                continue
            if "since" in bounds and created <= bounds["since"]:
                continue
            rows.append((created, f"{record.name}/{c.name}", c, record))
    rows.sort(key=lambda row: (-row[0], row[1]))
    if limit > 0:
        rows = rows[:limit]
    size = _truthy(query.get("size"))
    return [_summary(c, record, created, size) for created, _, c, record in rows]


def image_list(fleet: FleetAccess, query: dict[str, str], api: str) -> list[Json]:
    """``GET /images/json``: one row per image id, with the union of tags and the hosts having it."""
    filters = parse_filters(query.get("filters"), frozenset({"reference", "label", "dangling", "node"}))
    by_id: dict[str, Json] = {}
    for record in fleet.records():
        if record.images is None:
            continue
        if filters.get("node") and record.name not in filters["node"]:
            continue
        for image in record.images:
            if filters.get("reference") and not any(image_matches(image, r) for r in filters["reference"]):
                continue
            if filters.get("label") and not label_matches(image.labels, filters["label"]):
                continue
            if filters.get("dangling") and (bool(image.tags) == _truthy(filters["dangling"][0])):
                continue
            row = by_id.get(image.id)
            if row is None:
                row = by_id[image.id] = {
                    "Id": image.id,
                    "ParentId": "",
                    "RepoTags": [],
                    "RepoDigests": [],
                    "Created": _epoch(image.created),
                    "Size": image.size,
                    "SharedSize": -1,
                    "Labels": image.labels or None,
                    "Containers": 0,
                    "Hosts": [],
                }
                if parse_api_version(api) < (1, 44):
                    row["VirtualSize"] = image.size
            row["Hosts"].append(record.name)
            row["Containers"] += sum(1 for c in record.containers if c.image_id == image.id)
            for key, values in (("RepoTags", image.tags), ("RepoDigests", image.digests)):
                row[key] += [v for v in values if v not in row[key]]
    rows = sorted(by_id.values(), key=lambda r: (-r["Created"], r["Id"]))
    for row in rows:
        if not row["RepoTags"]:
            row["RepoTags"] = ["<none>:<none>"] if parse_api_version(api) < (1, 44) else []
    return rows


def _host_status_pairs(record: HostRecord, now: float) -> list[list[str]]:
    _, addr = _address(record)
    tally = record.tally().by_state
    total = len(record.containers)
    running, paused = tally["running"], tally["paused"]
    facts = record.facts
    labels = [f"{k}={v}" for k, v in sorted(record.settings.labels.items())]
    if facts is not None:
        labels = [
            f"kernelversion={facts.kernel_version}",
            f"operatingsystem={facts.operating_system}",
            f"ostype={facts.os_type}",
            f"storagedriver={facts.storage_driver}",
            *labels,
        ]
    stale = record.is_stale(now)
    status = {HostStatus.UP: "Healthy", HostStatus.UNKNOWN: "Pending"}.get(record.status, "Unhealthy")
    return [
        [f" {record.name}", addr or record.settings.url],
        ["  └ ID", facts.engine_id if facts else ""],
        ["  └ Status", status],
        ["  └ Containers", f"{total} ({running} Running, {paused} Paused, {total - running - paused} Stopped)"],
        ["  └ Reserved CPUs", f"0 / {facts.ncpu if facts else 0}"],
        ["  └ Reserved Memory", f"0 B / {_bytes(facts.mem_total if facts else 0)}"],
        ["  └ Labels", ", ".join(labels)],
        ["  └ Error", record.last_error or "(none)"],
        ["  └ UpdatedAt", rfc3339(record.last_seen) or "never"],
        ["  └ ServerVersion", facts.server_version if facts else ""],
        ["  └ Stale", "yes" if stale else "no"],
    ]


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.4g} {unit}"
        value /= 1024
    return f"{n} B"


def fleet_info(fleet: FleetAccess) -> Json:
    now = time.time()
    records = fleet.records()
    counts: Counter[str] = Counter()
    images: set[str] = set()
    ncpu = mem = 0
    status: list[list[str]] = [["Strategy", "spread"], ["Filters", "constraint, affinity, node name"],
                               ["Nodes", str(len(records))]]
    warnings: list[str] = []
    kernel = ""
    for record in records:
        for c in record.containers:
            counts[c.state] += 1
        counts["total"] += len(record.containers)
        images.update(i.id for i in record.images or ())
        if record.facts is not None and record.status is HostStatus.UP:
            ncpu += record.facts.ncpu
            mem += record.facts.mem_total
            kernel = kernel or record.facts.kernel_version
        status += _host_status_pairs(record, now)
        if record.status is not HostStatus.UP:
            why = f": {record.last_error}" if record.last_error else ""
            warnings.append(f"WARNING: host {record.name} is {record.status.value}{why}")
        elif record.is_stale(now):
            warnings.append(f"WARNING: host {record.name} is stale (last seen {rfc3339(record.last_seen)})")
    running, paused = counts["running"], counts["paused"]
    return {
        "ID": "fleetd",
        "Containers": counts["total"],
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": counts["total"] - running - paused,
        "Images": len(images),
        "Driver": "",
        "DriverStatus": [],
        "SystemStatus": status,
        "Plugins": {"Volume": [], "Network": [], "Authorization": None, "Log": []},
        # Daemon capabilities: true, or the CLI prints a warning per field about fleetd itself.
        **{k: True for k in ("MemoryLimit", "SwapLimit", "KernelMemory", "KernelMemoryTCP", "CpuCfsPeriod",
                             "CpuCfsQuota", "CPUShares", "CPUSet", "PidsLimit", "OomKillDisable",
                             "IPv4Forwarding", "BridgeNfIptables", "BridgeNfIp6tables")},
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": rfc3339(now),
        "LoggingDriver": "",
        "CgroupDriver": "",
        "NEventsListener": 0,
        "KernelVersion": kernel,
        "OperatingSystem": "fleetd",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": ncpu,
        "MemTotal": mem,
        "IndexServerAddress": "",
        "RegistryConfig": None,
        "GenericResources": None,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": "fleetd",
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": f"fleetd/{FLEETD_VERSION}",
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": [],
        "Warnings": warnings,
    }


def fleet_version(fleet: FleetAccess, advertised: str) -> Json:
    components: list[Json] = [
        {
            "Name": "Engine",
            "Version": f"fleetd/{FLEETD_VERSION}",
            "Details": {
                "ApiVersion": advertised,
                "MinAPIVersion": FLEETD_MIN_API,
                "GitCommit": "",
                "GoVersion": f"python{platform.python_version()}",
                "Os": "linux",
                "Arch": _arch(),
                "BuildTime": "",
                "Experimental": "false",
            },
        }
    ]
    for record in fleet.records():
        facts = record.facts
        components.append(
            {
                "Name": f"host {record.name}",
                "Version": facts.server_version if facts else "unknown",
                "Details": {
                    "ApiVersion": facts.api_version if facts else "",
                    "Status": record.status.value,
                    "URL": record.settings.url,
                },
            }
        )
    return {
        "Platform": {"Name": "fleetd"},
        "Components": components,
        "Version": f"fleetd/{FLEETD_VERSION}",
        "ApiVersion": advertised,
        "MinAPIVersion": FLEETD_MIN_API,
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": platform.release(),
        "BuildTime": "",
        "Experimental": False,
    }


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
