"""The API version comes from the first answer's ``Api-Version`` header, not from a ``/_ping`` before it."""

from __future__ import annotations

import asyncio
import re

import pytest

from fleetd.dockerapi import DockerClient, EngineConnections, EngineNotFound, EngineVersionError
from tests.fakes import FakeEngines
from tests.fakes.behaviour import docker_20_10, docker_29, podman

VERSIONED = re.compile(r"^/v\d+\.\d+/")


async def test_a_first_get_is_answered_once_and_names_the_version(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(docker_20_10(containers=2))
    async with DockerClient(eng.url) as client:
        assert client.api_version is None and client.server is None
        info = await client.system.info()
        assert info.ServerVersion == "20.10.24+dfsg1"
        assert client.api_version == "1.41"
        assert client.server == "Docker/20.10.24+dfsg1 (linux)" and not client.is_podman
        assert len(await client.containers.list(all=True)) == 2
    assert eng.paths() == ["/info", "/v1.41/containers/json?all=1"]


async def test_podman_is_known_from_the_first_answer(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(podman(containers=1))
    async with DockerClient(eng.url) as client:
        await client.containers.list_body(all=True)
        assert client.is_podman and client.api_version == "1.41"
    assert eng.paths() == ["/containers/json?all=1"]


async def test_concurrent_first_gets_need_no_ping(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=3)
    async with DockerClient(eng.url) as client:
        await asyncio.gather(client.system.info(), client.containers.list(all=True), client.images.list())
        assert client.api_version == "1.47"
    assert "/_ping" not in eng.paths() and len(eng.paths()) == 3


async def test_a_newer_daemon_is_asked_again_under_our_version(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(docker_29(containers=1))
    async with DockerClient(eng.url) as client:
        rows = await client.containers.list(all=True)
        assert len(rows) == 1 and client.api_version == "1.51"
        await client.system.info()
    # the unversioned answer was at 1.52 (newer than ours): not used, the request sent again
    assert eng.paths() == ["/containers/json?all=1", "/v1.51/containers/json?all=1", "/v1.51/info"]


async def test_an_error_answer_names_the_version_too(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=0)
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineNotFound):
            await client.containers.inspect("nope")
        assert client.api_version == "1.47"
    assert eng.paths() == ["/containers/nope/json"]  # raised from the first answer, not asked twice


async def test_a_daemon_below_our_window_is_refused_at_its_first_answer(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(api_version="1.12", min_api_version="1.12")
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineVersionError, match=r"older than the oldest supported 1\.24"):
            await client.system.info()
        assert client.api_version is None
    assert eng.paths() == ["/info"]


async def test_a_first_request_that_is_not_a_get_waits_for_ping(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1)
    cid = next(iter(eng.state.containers))
    async with DockerClient(eng.url) as client:
        await client.containers.stop(cid, t=0)
    # an action is never sent twice: the version is negotiated before it
    assert [p.split("?")[0] for p in eng.paths()] == ["/_ping", f"/v1.47/containers/{cid}/stop"]


async def test_without_a_header_the_version_is_negotiated_and_the_request_sent_again(
    fake_engine: FakeEngines,
) -> None:
    eng = await fake_engine(docker_20_10(containers=1, ping_api_version_header=None))
    async with DockerClient(eng.url) as client:
        await client.system.info()
        assert client.api_version == "1.41"  # from /version
    assert eng.paths() == ["/info", "/_ping", "/version", "/v1.41/info"]


async def test_a_pinned_version_is_sent_from_the_first_request(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=0)
    async with DockerClient(eng.url, api_version="1.44") as client:
        await client.system.info()
    assert eng.paths() == ["/v1.44/info"]


async def test_an_upgraded_daemon_is_read_again_after_forget_version(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(docker_20_10(containers=0))
    async with EngineConnections() as pool:
        client = DockerClient(eng.url, connections=pool)
        await client.system.info()
        assert client.api_version == "1.41"
        eng.behaviour.api_version, eng.behaviour.server_version = "1.47", "27.5.1"
        client.forget_version()  # what the host loop does when the host went down
        await client.system.info()
        assert client.api_version == "1.47" and client.server == "Docker/27.5.1 (linux)"
        await client.aclose()
    assert [p for p in eng.paths() if VERSIONED.match(p)] == []  # both first answers were used
