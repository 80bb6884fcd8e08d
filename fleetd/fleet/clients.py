"""Engine clients for inventory hosts, sharing the connection pools."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

from fleetd.config.model import AnswerLimits, HostSettings, Settings
from fleetd.dockerapi import (
    DockerClient,
    EngineConnections,
    ReadLimits,
    SSHOptions,
    Timeouts,
    TLSConfig,
    make_ssl_context,
    parse_endpoint,
)

__all__ = ["ClientFactory", "keepalive_for", "read_limits", "ssh_options", "tls_config"]


def read_limits(limits: AnswerLimits) -> ReadLimits:
    """The Engine client's caps, with the config key that raises each named in its error."""
    return ReadLimits(
        containers=limits.containers,
        images=limits.images,
        info=limits.info,
        other=limits.other,
        hint="raise poll.max_answer.{name} in the config if this daemon is genuine",
    )


def keepalive_for(settings: Settings) -> float:
    """Idle connections must outlive the longest gap between two polls of a host."""
    longest = max((h.interval + h.timeout for h in settings.hosts if h.enabled), default=15.0)
    return longest + 30.0


def tls_config(settings: HostSettings) -> TLSConfig | None:
    if settings.tls is None:
        return None
    t = settings.tls
    return TLSConfig(ca=t.ca, cert=t.cert, key=t.key, verify=t.verify)


def ssh_options(settings: HostSettings) -> SSHOptions | None:
    if settings.ssh is None:
        return None
    s = settings.ssh
    return SSHOptions(
        user=s.user,
        identity=s.identity,
        known_hosts=s.known_hosts,
        socket=s.socket,
        connect_timeout=s.connect_timeout,
        keepalive_interval=s.keepalive_interval,
    )


def _build_all(configs: list[TLSConfig]) -> tuple[dict[TLSConfig, ssl.SSLContext], dict[TLSConfig, str]]:
    built: dict[TLSConfig, ssl.SSLContext] = {}
    failed: dict[TLSConfig, str] = {}
    for tls in configs:
        try:
            built[tls] = make_ssl_context(tls)
        except (ssl.SSLError, OSError, ValueError) as exc:
            failed[tls] = str(exc) or type(exc).__name__
    return built, failed


class ClientFactory:
    def __init__(self, connections: EngineConnections, *, connect_timeout: float | None = None) -> None:
        self.connections = connections
        self._connect_timeout = connect_timeout
        self._prepared: dict[TLSConfig, ssl.SSLContext] = {}

    async def prepare(self, hosts: Iterable[HostSettings]) -> list[str]:
        """Build every TLS context *hosts* need, before any host is touched; on failure the
        problems (``file:line: host: message``), and nothing prepared changes."""
        needed: dict[TLSConfig, HostSettings] = {}
        for host in hosts:
            tls = tls_config(host)
            if tls is not None and host.enabled:
                needed.setdefault(tls, host)
        built, failed = await asyncio.to_thread(_build_all, list(needed))
        if failed:
            return [
                f"{needed[tls].source}: hosts.{needed[tls].name}.tls: cannot build the TLS context: {why}"
                for tls, why in failed.items()
            ]
        self._prepared = built
        return []

    async def client_for(self, settings: HostSettings, limits: AnswerLimits | None = None) -> DockerClient:
        endpoint = parse_endpoint(settings.url, tls_config(settings), ssh_options(settings))
        if endpoint.tls is not None:
            # Reading certificate files blocks: done in a thread, once per TLS config, by
            # prepare() before a reload touches any host (or here, at start).
            ctx = self._prepared.get(endpoint.tls)
            if ctx is None:
                ctx = await asyncio.to_thread(make_ssl_context, endpoint.tls)
            self.connections.preload_ssl(endpoint, ctx)
        return DockerClient(
            settings.url,
            tls=endpoint.tls,
            ssh=ssh_options(settings),
            timeouts=Timeouts(total=settings.timeout, connect=self._connect_timeout),
            connections=self.connections,
            limits=read_limits(limits or AnswerLimits()),
        )

    async def release_unused(self, urls: set[str], hosts: tuple[HostSettings, ...] = ()) -> None:
        """Close unix-socket pools and SSH connections no host uses any more (*hosts*: the new inventory)."""
        in_use = {parse_endpoint(u).unix_path for u in urls if u.startswith("unix://")}
        for path in self.connections.unix_paths():
            if path not in in_use:
                await self.connections.release_unix(path)
        ssh_in_use = {
            parse_endpoint(h.url, ssh=ssh_options(h)).ssh for h in hosts if h.enabled and h.url.startswith("ssh://")
        }
        for config in self.connections.ssh_configs():
            if config not in ssh_in_use:
                await self.connections.release_ssh(config)
        # TLS contexts (certificates, keys in memory) of hosts that left or changed their tls: settings
        self.connections.prune_ssl({tls for h in hosts if h.enabled and (tls := tls_config(h)) is not None})
