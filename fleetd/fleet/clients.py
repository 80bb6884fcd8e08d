"""Engine clients for inventory hosts, sharing the connection pools."""

from __future__ import annotations

import asyncio

from fleetd.config.model import AnswerLimits, HostSettings
from fleetd.dockerapi import (
    DockerClient,
    EngineConnections,
    ReadLimits,
    Timeouts,
    TLSConfig,
    make_ssl_context,
    parse_endpoint,
)

__all__ = ["ClientFactory", "read_limits", "tls_config"]


def read_limits(limits: AnswerLimits) -> ReadLimits:
    """The Engine client's caps, with the config key that raises each named in its error."""
    return ReadLimits(
        containers=limits.containers,
        images=limits.images,
        info=limits.info,
        other=limits.other,
        hint="raise poll.max_answer.{name} in the config if this daemon is genuine",
    )


def tls_config(settings: HostSettings) -> TLSConfig | None:
    if settings.tls is None:
        return None
    t = settings.tls
    return TLSConfig(ca=t.ca, cert=t.cert, key=t.key, verify=t.verify)


class ClientFactory:
    def __init__(self, connections: EngineConnections, *, connect_timeout: float | None = None) -> None:
        self.connections = connections
        self._connect_timeout = connect_timeout

    async def client_for(self, settings: HostSettings, limits: AnswerLimits | None = None) -> DockerClient:
        endpoint = parse_endpoint(settings.url, tls_config(settings))
        if endpoint.tls is not None:
            # Reading certificate files blocks: do it in a thread, once per TLS config.
            ctx = await asyncio.to_thread(make_ssl_context, endpoint.tls)
            self.connections.preload_ssl(endpoint, ctx)
        return DockerClient(
            settings.url,
            tls=endpoint.tls,
            timeouts=Timeouts(total=settings.timeout, connect=self._connect_timeout),
            connections=self.connections,
            limits=read_limits(limits or AnswerLimits()),
        )

    async def release_unused(self, urls: set[str]) -> None:
        """Close unix-socket pools no host uses any more."""
        in_use = {parse_endpoint(u).unix_path for u in urls if u.startswith("unix://")}
        for path in self.connections.unix_paths():
            if path not in in_use:
                await self.connections.release_unix(path)
