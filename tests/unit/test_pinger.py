"""The raw liveness pinger: keep-alive reuse, a daemon that closed the connection, hangs, unix sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetd.dockerapi import DockerClient, EngineTimeout, EngineUnreachable
from fleetd.dockerapi.pinger import raw_pinger
from tests.fakes import FakeEngine, Fault, docker_20_10


async def test_pings_reuse_one_connection_and_survive_a_closed_one() -> None:
    async with FakeEngine(docker_20_10(containers=1)) as eng, DockerClient(eng.url) as client:
        pinger = raw_pinger(client)
        assert pinger is not None
        for _ in range(3):
            await pinger.ping(1.0)
        assert [p for p in eng.paths() if p == "/_ping"] == ["/_ping"] * 3
        writer = pinger._writer
        assert writer is not None
        writer.transport.abort()  # the kept connection went away between two pings
        await pinger.ping(1.0)  # retried once on a new connection
        assert pinger._writer is not writer
        eng.behaviour.faults["ping"] = Fault.HANG
        with pytest.raises(EngineTimeout, match="GET /_ping"):
            await pinger.ping(0.3)
        pinger.close()


async def test_unix_socket_and_refused(tmp_path: Path) -> None:
    engine = FakeEngine(docker_20_10(containers=1), unix_path=tmp_path / "d.sock")
    async with engine as eng, DockerClient(eng.url) as client:
        pinger = raw_pinger(client)
        assert pinger is not None
        await pinger.ping(1.0)
        pinger.close()
    async with DockerClient("tcp://127.0.0.1:9") as client:
        pinger = raw_pinger(client)
        assert pinger is not None
        with pytest.raises(EngineUnreachable):
            await pinger.ping(1.0)
