"""A TLS context is never built on the event loop: it reads certificate files (blocking). The pool
hands out only contexts prepared in a thread, and says so loudly when asked for one nobody prepared."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator

import pytest

from fleetd.config.model import HostSettings, TLSSettings
from fleetd.dockerapi import DockerClient, EngineConnections, TLSConfig
from fleetd.dockerapi import connections as connections_module
from fleetd.dockerapi.connections import parse_endpoint
from fleetd.fleet import clients as clients_module
from fleetd.fleet.clients import ClientFactory


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The thread every TLS context is built in."""
    seen: list[str] = []
    real = connections_module.make_ssl_context

    def recording(tls: TLSConfig) -> ssl.SSLContext:
        seen.append(threading.current_thread().name)
        return real(tls)

    monkeypatch.setattr(connections_module, "make_ssl_context", recording)
    monkeypatch.setattr(clients_module, "make_ssl_context", recording)  # ClientFactory's own builds
    yield seen


async def test_a_context_nobody_prepared_is_refused_not_built(builds: list[str]) -> None:
    async with EngineConnections() as pool:
        endpoint = parse_endpoint("https://127.0.0.1:2376", TLSConfig(verify=False))
        with pytest.raises(RuntimeError, match=r"no TLS context prepared for https://127.0.0.1:2376: await"):
            pool.ssl_for(endpoint)
        assert builds == []
        assert pool.ssl_for(parse_endpoint("tcp://127.0.0.1:2375")) is False  # plain HTTP needs none


async def test_prepare_builds_in_a_thread_once_per_tls_config(builds: list[str]) -> None:
    async with EngineConnections() as pool:
        a = parse_endpoint("https://127.0.0.1:2376", TLSConfig(verify=False))
        b = parse_endpoint("https://127.0.0.2:2376", TLSConfig(verify=False))  # the same TLS config
        await pool.prepare_ssl(a)
        await pool.prepare_ssl(b)
        ctx = pool.ssl_for(a)
        assert isinstance(ctx, ssl.SSLContext) and pool.ssl_for(b) is ctx
        assert len(builds) == 1 and builds[0] != threading.main_thread().name


async def test_a_client_entered_over_tls_and_the_fleets_factory_prepare_off_the_loop(builds: list[str]) -> None:
    async with DockerClient("https://127.0.0.1:2376", tls=TLSConfig(verify=False)) as client:
        assert isinstance(client._connections.ssl_for(client.endpoint), ssl.SSLContext)
    async with EngineConnections() as pool:
        factory = ClientFactory(pool)
        settings = HostSettings(name="h", url="https://127.0.0.1:2377", tls=TLSSettings(verify=False))
        client = await factory.client_for(settings)
        assert isinstance(pool.ssl_for(client.endpoint), ssl.SSLContext)
    assert len(builds) == 2 and threading.main_thread().name not in builds
