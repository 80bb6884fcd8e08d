"""The raw liveness pinger: keep-alive reuse, a daemon that closed the connection, hangs, unix sockets."""

from __future__ import annotations

import asyncio
import dataclasses
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
        transport = pinger.transport
        assert transport is not None
        transport.abort()  # the kept connection went away between two pings
        await pinger.ping(1.0)  # on a new connection
        assert pinger.transport is not transport
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


async def test_targeted_list_goes_over_the_kept_connection_capped_and_serialised() -> None:
    from fleetd.dockerapi import EngineProtocolError
    from fleetd.dockerapi.pinger import list_by_id

    async with FakeEngine(docker_20_10(containers=4)) as eng, DockerClient(eng.url) as client:
        pinger = raw_pinger(client)
        assert pinger is not None
        listed = await client.containers.list(all=True)
        ids = [listed[0].Id, listed[2].Id]
        before = len(eng.paths())
        rows = await list_by_id(pinger, client, ids, timeout=2.0)
        assert [r.Id for r in rows] == [c.Id for c in listed if c.Id in ids]
        assert rows == [c for c in listed if c.Id in ids]  # the same records as the client decodes
        sent = eng.paths()[before:]
        assert len(sent) == 1 and sent[0].startswith(f"/v{client.api_version}/containers/json?all=1&filters=")
        transport = pinger.transport
        # a ping and two lists at once share the one connection, one exchange after the other
        results = await asyncio.gather(
            pinger.ping(2.0),
            list_by_id(pinger, client, ids, timeout=2.0),
            list_by_id(pinger, client, ids[:1], timeout=2.0),
        )
        assert results[1] == rows and [r.Id for r in results[2]] == ids[:1]
        assert pinger.transport is transport
        with pytest.raises(EngineProtocolError, match="longer than 100 bytes"):
            await pinger.get(sent[0], timeout=2.0, max_body=100)
        with pytest.raises(ValueError):
            await pinger.get("/containers/json?x=\r\nHost: evil", timeout=2.0, max_body=100)
        client.limits = dataclasses.replace(client.limits, containers=100)  # too small: the client says so
        with pytest.raises(EngineProtocolError):
            await list_by_id(pinger, client, ids, timeout=2.0)
        pinger.close()
