"""Shared HTTP connection pools for many Engine endpoints.

One TCP connector serves every TCP and TLS host (aiohttp keys its pool by host, port and
TLS context, so each host keeps its own keep-alive connections); each unix socket gets one
connector of its own, because a UnixConnector is bound to one path; each ``ssh://`` host gets
an :class:`~fleetd.dockerapi.ssh_connector.SSHConnector` owning its one SSH connection, whose
channels to the remote socket are the pooled connections. The pool owns every session it opens
and closes them in :meth:`EngineConnections.aclose`.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from fleetd.dockerapi.ssh_config import SSHConfig, SSHOptions

if TYPE_CHECKING:
    from fleetd.dockerapi.ssh import SSHTunnel

__all__ = [
    "Endpoint",
    "EngineConnections",
    "TLSConfig",
    "make_ssl_context",
    "parse_endpoint",
    "refuse_passphrase",
]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a daemon is: ``base`` is the HTTP origin, ``unix_path`` set for unix sockets,
    ``ssh`` for daemons reached over SSH."""

    url: str
    base: str
    unix_path: str | None = None
    tls: TLSConfig | None = None
    ssh: SSHConfig | None = None


def parse_endpoint(url: str, tls: TLSConfig | None = None, ssh: SSHOptions | None = None) -> Endpoint:
    """``tcp://h:p`` / ``http://h:p`` → plain HTTP (TLS when ``tls`` is given for tcp),
    ``https://h:p`` → TLS, ``unix:///path`` → the socket, ``ssh://[user@]host[:port]`` → the
    remote socket (``ssh`` options) over SSH."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a URL: {url!r}")
    scheme = scheme.lower()
    if scheme == "ssh":
        return Endpoint(url=url, base="http://docker", ssh=SSHConfig.from_url(url, ssh))
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"unix socket path must be absolute: {url!r}")
        return Endpoint(url=url, base="http://docker", unix_path=rest)
    hostport = rest.rstrip("/")
    if scheme == "https" or (scheme == "tcp" and tls is not None):
        return Endpoint(url=url, base=f"https://{hostport}", tls=tls or TLSConfig())
    if scheme in ("tcp", "http"):
        return Endpoint(url=url, base=f"http://{hostport}")
    raise ValueError(f"unsupported scheme {scheme!r} in {url!r}")


def make_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """Build a client context; reads files, so call it off the event loop when it matters."""
    ctx = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    if tls.cert is not None:
        ctx.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None, password=refuse_passphrase)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def refuse_passphrase() -> bytes:
    """``load_cert_chain``'s password callback: a service has no terminal to prompt on."""
    raise ssl.SSLError("the TLS key is encrypted with a passphrase; fleetd never prompts for one")


class _TrackingTCPConnector(aiohttp.TCPConnector):
    """A TCPConnector that remembers its transports, so closing can abort them all.

    A request cancelled mid-flight (shutdown, a hung daemon) closes its TLS connection
    gracefully, which waits for the peer's close_notify; a daemon that never sends it would
    keep the socket open past the event loop. Aborting on close bounds that."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Keyed by the protocol, which lives as long as the connection: uvloop's transports cannot
        # be weakly referenced, and a closing protocol forgets its transport before it is closed.
        self.transports: weakref.WeakKeyDictionary[ResponseHandler, asyncio.BaseTransport] = (
            weakref.WeakKeyDictionary()
        )

    async def _create_connection(self, *args: Any, **kwargs: Any) -> ResponseHandler:
        proto = await super()._create_connection(*args, **kwargs)
        if proto.transport is not None:
            self.transports[proto] = proto.transport
        return proto

    def abort_all(self) -> None:
        for transport in list(self.transports.values()):
            abort = getattr(transport, "abort", None)  # uvloop's are no asyncio.Transport subclass
            if abort is not None:
                abort()


class EngineConnections:
    """Owner of the HTTP sessions used to talk to daemons.

    ``keepalive`` should exceed the longest poll interval so connections survive between
    polls. Concurrency is not limited here (the poller bounds it), so a request never
    waits for a pool slot and its timeout measures only the daemon.
    """

    def __init__(self, *, keepalive: float = 75.0) -> None:
        self._keepalive = keepalive
        self._tcp: aiohttp.ClientSession | None = None
        self._tcp_connector: _TrackingTCPConnector | None = None
        self._unix: dict[str, aiohttp.ClientSession] = {}
        self._ssh: dict[SSHConfig, tuple[aiohttp.ClientSession, SSHTunnel]] = {}
        self._ssl: dict[TLSConfig, ssl.SSLContext] = {}
        self._closed = False

    @property
    def keepalive(self) -> float:
        return self._keepalive

    def _new_session(self, connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            connector_owner=True,
            # The daemon never compresses; skip the header and the decoder's work.
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            headers={"User-Agent": "fleetd"},
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
            trust_env=False,
            # Cookies are never kept: a jar would send one daemon's Set-Cookie to another.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def session_for(self, endpoint: Endpoint) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("EngineConnections is closed")
        if endpoint.ssh is not None:
            return self._ssh_session(endpoint.ssh)
        if endpoint.unix_path is not None:
            session = self._unix.get(endpoint.unix_path)
            if session is None:
                unix = aiohttp.UnixConnector(
                    path=endpoint.unix_path, limit=0, keepalive_timeout=self._keepalive
                )
                session = self._unix[endpoint.unix_path] = self._new_session(unix)
            return session
        if self._tcp is None:
            tcp = _TrackingTCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=self._keepalive, ttl_dns_cache=300
            )
            self._tcp = self._new_session(tcp)
            self._tcp_connector = tcp
        return self._tcp

    def _ssh_session(self, config: SSHConfig) -> aiohttp.ClientSession:
        entry = self._ssh.get(config)
        if entry is None:
            from fleetd.dockerapi.ssh import SSHTunnel  # asyncssh only for fleets with ssh:// hosts
            from fleetd.dockerapi.ssh_connector import SSHConnector

            tunnel = SSHTunnel(config)
            session = self._new_session(SSHConnector(tunnel, keepalive_timeout=self._keepalive))
            entry = self._ssh[config] = (session, tunnel)
        return entry[0]

    def ssh_tunnel(self, config: SSHConfig) -> SSHTunnel | None:
        """The tunnel serving ``config``, once a request has used it."""
        entry = self._ssh.get(config)
        return entry[1] if entry is not None else None

    def ssh_configs(self) -> list[SSHConfig]:
        return list(self._ssh)

    async def release_ssh(self, config: SSHConfig) -> None:
        """Close the SSH connection of a host that left the inventory or changed its settings."""
        entry = self._ssh.pop(config, None)
        if entry is not None:
            await entry[0].close()

    def ssl_for(self, endpoint: Endpoint) -> ssl.SSLContext | bool:
        """The TLS context prepared for an endpoint (one per TLS config, so equal configs share a pool).

        Never built here: that reads certificate files, which would block the event loop. A context
        nobody prepared (:meth:`prepare_ssl`, :meth:`preload_ssl`) is a bug, and raises."""
        if endpoint.tls is None:
            return False
        ctx = self._ssl.get(endpoint.tls)
        if ctx is None:
            raise RuntimeError(
                f"no TLS context prepared for {endpoint.url}: await EngineConnections.prepare_ssl(endpoint)"
                " first (it builds the context in a thread; building it here would block the event loop)"
            )
        return ctx

    async def prepare_ssl(self, endpoint: Endpoint) -> None:
        """Build the endpoint's TLS context in a thread, unless its TLS config has one already."""
        if endpoint.tls is not None and endpoint.tls not in self._ssl:
            ctx = await asyncio.to_thread(make_ssl_context, endpoint.tls)
            self._ssl.setdefault(endpoint.tls, ctx)

    def preload_ssl(self, endpoint: Endpoint, ctx: ssl.SSLContext) -> None:
        """Install a context built elsewhere (e.g. in a thread) for an endpoint's TLS config."""
        if endpoint.tls is not None:
            self._ssl[endpoint.tls] = ctx

    def prune_ssl(self, in_use: set[TLSConfig]) -> int:
        """Forget the TLS contexts no host uses any more (after a reload); how many were dropped."""
        stale = [tls for tls in self._ssl if tls not in in_use]
        for tls in stale:
            del self._ssl[tls]
        return len(stale)

    def unix_paths(self) -> list[str]:
        return list(self._unix)

    async def release_unix(self, path: str) -> None:
        """Close the pool of one unix socket (a host using it left the inventory)."""
        session = self._unix.pop(path, None)
        if session is not None:
            await session.close()

    async def aclose(self) -> None:
        """Close every session; safe to call more than once."""
        self._closed = True
        sessions = list(self._unix.values()) + [session for session, _ in self._ssh.values()]
        self._unix.clear()
        self._ssh.clear()
        if self._tcp is not None:
            sessions.append(self._tcp)
            self._tcp = None
        for session in sessions:
            await session.close()
        if self._tcp_connector is not None:
            self._tcp_connector.abort_all()
            self._tcp_connector = None

    async def __aenter__(self) -> EngineConnections:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
