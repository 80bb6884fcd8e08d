"""Synthetic fleets for the snapshot tests: a FleetState written through its writer (no network)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from fleetd.config.model import HostSettings
from fleetd.fleet.records import ContainerRecord, EngineFacts, HostRecord, HostStatus, PortRecord
from fleetd.fleet.state import FleetState
from fleetd.util.timefmt import rfc3339
from tests.writes import poll_failed, poll_ok

NOW = 1_764_496_800.0  # 2025-11-30T10:00:00Z


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def facts(i: int, **kw: Any) -> EngineFacts:
    values: dict[str, Any] = dict(
        engine_id=f"ENGINE-{i:04d}",
        name=f"node{i}",
        server_version="27.5.1",
        api_version="1.47",
        operating_system="Debian GNU/Linux 12 (bookworm)",
        os_type="linux",
        kernel_version="6.1.0-28-amd64",
        architecture="x86_64",
        ncpu=4,
        mem_total=8 * 1024**3,
        storage_driver="overlay2",
    )
    values.update(kw)
    return EngineFacts(**values)


def container(host: str, name: str, *, observed: float = NOW, **kw: Any) -> ContainerRecord:
    values: dict[str, Any] = dict(
        host=host,
        id=hashlib.sha256(f"{host}/{name}".encode()).hexdigest(),
        name=name,
        names=[name],
        image="nginx:1.27",
        image_id="sha256:" + "ab" * 32,
        command="nginx -g 'daemon off;'",
        state="running",
        status="Up 3 hours",
        health="none",
        created="2025-11-01T00:00:00Z",
        labels={"app": name.split("-")[0]},
        ports=[PortRecord(private_port=80, type="tcp", ip="0.0.0.0", public_port=8080)],
        observed_at=rfc3339(observed),
    )
    values.update(kw)
    return ContainerRecord(**values)


def add_host(
    state: FleetState,
    name: str,
    containers: list[ContainerRecord] | None = None,
    *,
    status: HostStatus = HostStatus.UP,
    index: int = 0,
    labels: dict[str, str] | None = None,
    last_error: str | None = None,
    seen: bool = True,
) -> HostRecord:
    """A host polled at the state's clock: up with these rows, or (``status`` down or error) seen an
    hour ago and failing now; ``seen=False``: never answered (no facts, no rows)."""
    state.add(
        HostSettings(
            name=name,
            url=f"tcp://127.0.0.{index % 250 + 1}:{2375 + index}",
            labels=labels if labels is not None else {"rack": f"r{index % 3}"},
        )
    )
    now = state.clock()
    rows = containers if containers is not None else ()
    if status is HostStatus.UP:
        return poll_ok(state, name, rows, at=now, facts=facts(index))
    if seen:
        poll_ok(state, name, rows, at=now - 3600, facts=facts(index))  # its data, as last seen
    return poll_failed(state, name, last_error or "connection refused", at=now, status=status)


def fleet(hosts: int, containers: int, *, clock: Callable[[], float] | None = None) -> FleetState:
    state = FleetState(clock=clock or Clock())
    for i in range(hosts):
        name = f"host{i:04d}"
        add_host(
            state,
            name,
            [container(name, f"app{j}-{i}") for j in range(containers)],
            index=i,
        )
    return state


def repoll(state: FleetState, *, now: float, status_suffix: str = "") -> None:
    """What a poll of an unchanged fleet does (every host answers): new records, new observed_at,
    new status text."""
    for r in state.records():
        status = f"Up 4 hours{status_suffix}"
        rows = [msgspec.structs.replace(c, observed_at=rfc3339(now), status=status) for c in r.containers]
        poll_ok(state, r.name, rows, at=now, facts=r.facts)
