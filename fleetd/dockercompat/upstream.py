"""The daemons behind fleetd: one :class:`Upstream` per host, and the fleet fleetd reads from.

An Upstream sends requests through the poller's shared connection pools (same TLS contexts, same
keep-alive connections) with paths fleetd builds itself, opens raw connections for hijacked
streams, and knows the host's API version window from its own ``/version``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import msgspec

from fleetd.config.model import HostSettings, Settings
from fleetd.dockerapi import EngineConnections, parse_endpoint
from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.tlsclient import tls_connect
from fleetd.dockercompat.versions import Window
from fleetd.fleet.clients import ssh_options, tls_config
from fleetd.fleet.poller import Poller
from fleetd.fleet.records import HostRecord, HostStatus
from fleetd.fleet.state import FleetState
from fleetd.ops.audit import Auditor

if TYPE_CHECKING:
    from fleetd.dockerapi.ssh import SSHTunnel
from fleetd.ops.targets import settle
from fleetd.util.ratelimit import FailureGate

__all__ = ["FleetAccess", "RawWriter", "Upstream", "host_unavailable"]


class RawWriter(Protocol):
    """The writing half of a hijacked upstream connection (asyncio.StreamWriter or TLSStream)."""

    @property
    def transport(self) -> asyncio.WriteTransport: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...


class _Version(msgspec.Struct):
    ApiVersion: str = ""
    MinAPIVersion: str = ""


def host_unavailable(record: HostRecord) -> DockerAPIError:
    why = f": {record.last_error}" if record.last_error else ""
    return DockerAPIError(503, f"host {record.name} is {record.status.value}{why}")


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    base: str  # http(s)://h:p or http://docker for unix sockets
    session: aiohttp.ClientSession
    ssl: ssl.SSLContext | bool
    unix_path: str | None
    timeout: float  # the host's poll timeout: connect and plain calls
    tunnel: SSHTunnel | None = None  # ssh:// hosts: raw connections are channels on it

    def url(self, path: str) -> str:
        return self.base + path

    def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> Any:
        """``session.request(...)`` as an async context manager. ``stream``: no total timeout,
        only the connect timeout (logs -f, wait, events, pulls run as long as they need)."""
        total = None if stream else (timeout if timeout is not None else self.timeout)
        url = self.base + path + (f"?{query}" if query else "")
        return self.session.request(
            method,
            url,
            data=data,
            headers=headers,
            ssl=self.ssl,
            timeout=aiohttp.ClientTimeout(total=total, connect=self.timeout),
            allow_redirects=False,
            auto_decompress=False,
        )

    async def open_raw(self) -> tuple[asyncio.StreamReader, RawWriter]:
        """A fresh connection for a hijacked stream (never a pooled one). Over TLS it is a
        :class:`~fleetd.dockercompat.tlsclient.TLSStream`, which can half-close."""
        async with asyncio.timeout(self.timeout):
            if self.tunnel is not None:
                from fleetd.dockerapi.ssh_connector import open_channel_stream  # only for ssh:// hosts

                return await open_channel_stream(self.tunnel, limit=2**20)
            if self.unix_path is not None:
                return await asyncio.open_unix_connection(self.unix_path, limit=2**20)
            parts = urlsplit(self.base)
            if isinstance(self.ssl, ssl.SSLContext):
                ctx = self.ssl
                name = parts.hostname if ctx.check_hostname else None
                stream = await tls_connect(parts.hostname or "", parts.port or 2376, ctx, name)
                return stream.reader, stream
            return await asyncio.open_connection(parts.hostname, parts.port, limit=2**20)


class FleetAccess:
    """What the Docker endpoint needs of the rest of fleetd: read the aggregate, reach a daemon,
    re-read a host after a change, audit. (The endpoint never writes the aggregate itself.)"""

    def __init__(
        self,
        state: FleetState,
        poller: Poller,
        connections: EngineConnections,
        settings: Callable[[], Settings],
        auditor: Auditor | None = None,
        failures: FailureGate | None = None,
    ) -> None:
        self.failures = failures if failures is not None else FailureGate()
        self.state = state
        self.poller = poller
        self.connections = connections
        self.settings = settings
        self.auditor = auditor
        self._windows: dict[str, tuple[str, Window]] = {}

    def records(self) -> list[HostRecord]:
        return [r for r in self.state.records() if r.settings.enabled]

    def up_records(self) -> list[HostRecord]:
        return [r for r in self.records() if r.status is HostStatus.UP]

    def record(self, host: str) -> HostRecord:
        record = self.state.get(host)
        if record is None:
            raise DockerAPIError(404, f"no host named {host!r} in fleetd's inventory")
        return record

    def upstream(self, host: str, *, require_up: bool = True) -> Upstream:
        record = self.record(host)
        if not record.settings.enabled:
            raise DockerAPIError(409, f"host {host} is disabled in fleetd's inventory")
        if require_up and record.status is not HostStatus.UP and record.last_seen is not None:
            raise host_unavailable(record)
        return self._upstream(record.settings)

    def _upstream(self, settings: HostSettings) -> Upstream:
        endpoint = parse_endpoint(settings.url, tls_config(settings), ssh_options(settings))
        session = self.connections.session_for(endpoint)
        return Upstream(
            host=settings.name,
            base=endpoint.base,
            session=session,
            ssl=self.connections.ssl_for(endpoint),
            unix_path=endpoint.unix_path,
            timeout=settings.timeout,
            tunnel=self.connections.ssh_tunnel(endpoint.ssh) if endpoint.ssh is not None else None,
        )

    async def window(self, host: str) -> Window:
        """The host's accepted API versions, from its unversioned ``/version`` (cached per daemon version)."""
        record = self.record(host)
        version = record.facts.server_version if record.facts is not None else ""
        cached = self._windows.get(host)
        if cached is not None and cached[0] == version and version:
            return cached[1]
        up = self._upstream(record.settings)
        try:
            async with up.request("GET", "/version") as resp:
                body = await resp.read()
            found = msgspec.json.decode(body, type=_Version) if resp.status == 200 else _Version()
        except (aiohttp.ClientError, TimeoutError, OSError, msgspec.DecodeError):
            found = _Version()
        high = found.ApiVersion or (record.facts.api_version if record.facts else "")
        window = Window(found.MinAPIVersion, high)
        if found.ApiVersion:
            self._windows[host] = (version, window)
        return window

    async def settled(self) -> None:
        """Right after start, wait (bounded by the slowest first poll) until every host answered once,
        so a first `docker ps` is the whole fleet rather than an empty list."""
        if self.state.is_ready():
            return
        bound = min(10.0, max((r.settings.timeout for r in self.records()), default=5.0) + 1.0)
        await self.state.wait_ready(bound)

    async def refresh(self, host: str, *, images: bool = False) -> bool:
        """Re-read ``host`` now, so the next read shows what a call just changed."""
        return await settle(self.state, self.poller, host, images=images)
