"""fleetd pointed at the lab's daemons, and what the daemons themselves say, for integration tests.

    async with fleet_server(tmp_path, lab_host(lab.daemons["d1"]), tls_host("tls", lab.daemons["tls"])) as fleet:
        assert listed(await fleet.containers(), "d1") == await daemon_truth(lab.daemons["d1"])

``fleet_server`` serves fleetd from a TestServer, ``fleetd_process`` runs ``fleetd run --config F``; both
yield a :class:`Fleet` (the REST API). Polling is fast (interval 1 s, timeout 0.5 s, backoff capped at
1 s) so state changes show within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
from aiohttp.test_utils import TestClient

from fleetd.config.events import EventsSettings
from fleetd.config.model import HostSettings, PollSettings, Settings, SnapshotSettings, TLSSettings
from fleetd.runtime import Fleet as Runtime
from tests.harness import FleetClient, eventually
from tests.integration.lab_daemon import Daemon
from tests.integration.lab_os import free_port

__all__ = [
    "INTERVAL",
    "MAX_BACKOFF",
    "PODMAN_INTERVAL",
    "PODMAN_TIMEOUT",
    "RFC3339",
    "SAMPLE",
    "TIMEOUT",
    "Fleet",
    "Json",
    "Truth",
    "assert_timestamps",
    "daemon_truth",
    "fleet_server",
    "fleetd_process",
    "host",
    "lab_host",
    "listed",
    "tls_host",
    "wait_until",
]

T = TypeVar("T")
Json = dict[str, Any]

INTERVAL = 1.0
TIMEOUT = 0.5
MAX_BACKOFF = 1.0
SAMPLE = 0.05  # how often the tests look at the API
#: podman 4.3 takes 0.5-0.8 s to answer /info here (it asks conmon, runc and its storage every time),
#: more than TIMEOUT: its host gets the per-host override a real inventory would give it.
PODMAN_INTERVAL = 3.0
PODMAN_TIMEOUT = 2.0
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
DATE_LIKE = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
TIME_KEYS = {"last_seen", "last_attempt", "created", "observed_at", "images_seen"}


# -- what the daemons say ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Truth:
    """One container as its daemon reports it (``docker ps -a`` and ``docker inspect``)."""

    id: str
    state: str
    labels: dict[str, str]
    created: str  # RFC 3339, whole seconds, as the Engine's list endpoint gives it


async def daemon_truth(daemon: Daemon, *filters: str) -> dict[str, Truth]:
    """Name → Truth for every container ``docker ps -a`` lists on ``daemon``."""
    options = [arg for f in filters for arg in ("--filter", f)]
    ps = await daemon.adocker("ps", "--all", "--no-trunc", *options, "--format", "{{.ID}}")
    ids = ps.stdout.split()
    if not ids:
        return {}
    inspected = json.loads((await daemon.adocker("inspect", *ids)).stdout)
    return {
        c["Name"].lstrip("/"): Truth(
            c["Id"], c["State"]["Status"], c["Config"]["Labels"] or {}, c["Created"][:19] + "Z"
        )
        for c in inspected
    }


def listed(containers: list[Json], host: str) -> dict[str, Truth]:
    """fleetd's containers of one host in the shape of :class:`Truth`."""
    return {
        c["name"]: Truth(c["id"], c["state"], c["labels"], c["created"])
        for c in containers
        if c["host"] == host
    }


def assert_timestamps(doc: Any, path: str = "") -> int:
    """Every timestamp fleetd emits is RFC 3339 UTC ending in Z; returns how many were checked.

    The daemon's own ``/info`` (``info`` in a host's detail) is passed through verbatim, so skipped.
    """
    checked = 0
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "info":
                continue
            if key in TIME_KEYS or key.endswith("_at"):
                assert value is None or isinstance(value, str), f"{path}.{key} = {value!r}"
            checked += assert_timestamps(value, f"{path}.{key}")
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            checked += assert_timestamps(value, f"{path}[{i}]")
    elif isinstance(doc, str) and DATE_LIKE.match(doc):
        assert RFC3339.match(doc), f"{path} = {doc!r} is not RFC 3339 UTC with Z"
        checked += 1
    return checked


async def wait_until(probe: Callable[[], Awaitable[T | None]], what: str, within: float = 15.0) -> float:
    """Sample ``probe`` every SAMPLE seconds until it answers something truthy; returns the wait."""
    started = time.monotonic()
    await eventually(probe, timeout=within, interval=SAMPLE, what=what)
    return time.monotonic() - started


# -- fleetd on the lab ----------------------------------------------------------------------------


def host(
    name: str,
    url: str,
    tls: TLSSettings | None = None,
    *,
    interval: float = INTERVAL,
    timeout: float = TIMEOUT,
    **labels: str,
) -> HostSettings:
    return HostSettings(name=name, url=url, labels=labels, tls=tls, interval=interval, timeout=timeout)


def lab_host(daemon: Daemon) -> HostSettings:
    """``daemon`` over TCP under its own name; podman with the timeout its slow /info needs."""
    if daemon.kind == "podman":
        return host(daemon.name, daemon.tcp_url, interval=PODMAN_INTERVAL, timeout=PODMAN_TIMEOUT)
    return host(daemon.name, daemon.tcp_url)


def tls_host(name: str, daemon: Daemon, *, ca: bool = True, client_cert: bool = True) -> HostSettings:
    paths = daemon.tls_paths
    assert paths is not None
    tls = TLSSettings(
        ca=paths.ca if ca else None,
        cert=paths.cert if client_cert else None,
        key=paths.key if client_cert else None,
    )
    return host(name, daemon.tcp_url, tls)


class Fleet:
    """fleetd's REST API, whether served by a TestServer or a ``fleetd run`` process."""

    def __init__(self, http: TestClient[Any, Any] | aiohttp.ClientSession) -> None:
        self.http = http

    async def get(self, path: str, params: list[tuple[str, str]] | None = None) -> Json:
        async with self.http.get(path, params=params) as resp:
            assert resp.status == 200, f"GET {path} {params}: {resp.status} {await resp.text()}"
            body: Json = await resp.json()
            return body

    async def hosts(self) -> dict[str, Json]:
        return {h["name"]: h for h in (await self.get("/api/v1/hosts"))["hosts"]}

    async def containers(self, **params: str) -> list[Json]:
        body = await self.get("/api/v1/containers", list(params.items()))
        assert body["total"] == len(body["containers"])
        return list(body["containers"])

    async def ready(self) -> bool:
        async with self.http.get("/readyz") as resp:
            return resp.status == 200


@contextlib.asynccontextmanager
async def fleet_server(tmp_path: Path, *hosts: HostSettings) -> AsyncIterator[Fleet]:
    """fleetd as an app on a TestServer polling ``hosts``; yields once the first polls are done."""
    settings = Settings(
        path=tmp_path / "fleetd.yaml",
        poll=PollSettings(interval=INTERVAL, timeout=TIMEOUT, max_backoff=MAX_BACKOFF),
        hosts=hosts,
        snapshots=SnapshotSettings(enabled=False, path=tmp_path / "fleetd.db"),
        # These tests judge polling (1 s interval, 0.5 s timeout); Engine events have their own
        # (test_live_real.py), and each stream makes podman's service slower for the rest of the session.
        events=EventsSettings(enabled=False),
    )
    async with FleetClient(Runtime(settings)) as client:
        fleet = Fleet(client)
        await wait_until(fleet.ready, "fleetd ready", within=10)
        yield fleet


def fleetd_command() -> list[str]:
    script = Path(sys.executable).with_name("fleetd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fleetd"]


@contextlib.asynccontextmanager
async def fleetd_process(tmp_path: Path, hosts: list[Json]) -> AsyncIterator[tuple[Fleet, Callable[[], str]]]:
    """``fleetd run --config F`` on a fresh loopback port; yields its API and a reader of its log."""
    port = free_port()
    config = tmp_path / "fleetd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{port}",
                "poll": {"interval": "1s", "timeout": "500ms", "max_backoff": "1s"},
                "snapshots": {"enabled": False},
                "log": {"format": "json"},
                "hosts": hosts,
            },
            sort_keys=False,
        )
    )
    log = tmp_path / "fleetd.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *fleetd_command(), "run", "--config", str(config), stdout=out, stderr=asyncio.subprocess.STDOUT
        )

    def log_text() -> str:
        return log.read_text(errors="replace")

    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            fleet = Fleet(http)

            async def ready() -> bool:
                assert proc.returncode is None, f"fleetd exited with {proc.returncode}:\n{log_text()}"
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    return await fleet.ready()
                return False

            await wait_until(ready, "fleetd run ready", within=20)
            yield fleet, log_text
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0 and time.monotonic() - started < 5, f"exit {code}:\n{log_text()}"
        assert "Traceback" not in log_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
            print(f"fleetd run was killed; its log:\n{log_text()[-4000:]}")
