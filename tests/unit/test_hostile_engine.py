"""Hostile daemons, in process: every answer no Docker daemon sends becomes an error that says what came.

Issue 16's table, one test per row for the Engine client; the memory rows are also run against
``fleetd run`` as a process in test_hostile_process.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from fleetd.config import load_config
from fleetd.dockerapi import (
    DockerClient,
    EngineConnections,
    EngineLimitExceeded,
    EngineProtocolError,
    EngineUnreachable,
    ReadLimits,
)
from fleetd.metrics import KNOWN_CONTAINER_STATES
from fleetd.runtime import Fleet
from tests.fakes import FakeEngines, Fault
from tests.harness import FleetClient

MiB = 1024 * 1024


async def test_an_answer_announced_larger_than_the_cap_is_refused_before_reading(
    fake_engine: FakeEngines,
) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["containers"] = Fault.HUGE
    limits = ReadLimits(containers=8 * MiB, hint="raise poll.max_answer.{name}")
    async with DockerClient(eng.url, limits=limits) as client:
        with pytest.raises(EngineLimitExceeded) as caught:
            await client.containers.list(all=True)
        assert (await client.system.info()).ID  # the same client still works
    text = str(caught.value)
    assert "over the 8 MiB cap for containers answers" in text
    assert "raise poll.max_answer.containers" in text
    assert "announces 20" in text  # the announced length, not a read one


async def test_an_endless_body_stops_at_the_cap(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["containers"] = Fault.ENDLESS
    async with DockerClient(eng.url, limits=ReadLimits(containers=4 * MiB)) as client:
        with pytest.raises(EngineLimitExceeded, match=r"passed 4 MiB, over the 4 MiB cap") as caught:
            await client.containers.list(all=True)
    assert caught.value.limit == 4 * MiB and caught.value.limit_name == "containers"


async def test_a_gzip_body_that_was_not_asked_for_is_refused_not_inflated(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2, hostile_bytes=64 * MiB)
    eng.behaviour.faults["containers"] = Fault.GZIP_BOMB
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineProtocolError, match="Content-Encoding: gzip, which fleetd never asks for"):
            await client.containers.list(all=True)


async def test_json_nested_100000_deep_is_a_named_protocol_error(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["containers"] = Fault.DEEP_JSON
    eng.behaviour.faults["info"] = Fault.DEEP_JSON
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineProtocolError, match="nested more than ~1,000 levels deep"):
            await client.containers.list(all=True)
        with pytest.raises(EngineProtocolError, match="nested more than ~1,000 levels deep"):
            await client.system.info_raw()


async def test_one_daemons_cookie_never_reaches_another(fake_engine: FakeEngines) -> None:
    setter = await fake_engine(containers=1, set_cookie="session=" + "s" * 4000 + "; Path=/")
    other = await fake_engine(containers=1)
    async with EngineConnections() as pools:
        # "localhost": cookie jars refuse cookies from bare IP addresses, not from host names.
        clients = [
            DockerClient(e.url.replace("127.0.0.1", "localhost"), connections=pools) for e in (setter, other)
        ]
        for _ in range(5):
            for client in clients:
                await client.system.info()
                await client.containers.list(all=True)
    assert len(other.requests) >= 10 and len(setter.requests) >= 10
    assert other.cookies == [] and setter.cookies == []


async def test_a_redirect_is_not_followed_and_names_status_and_location(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["containers"] = Fault.REDIRECT
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineProtocolError) as caught:
            await client.containers.list(all=True)
    assert "answered 301 Moved Permanently, a redirect to http://127.0.0.1:9/elsewhere" in str(caught.value)
    assert "does not follow redirects" in str(caught.value)


async def test_an_html_page_is_named_not_an_invalid_json(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["info"] = Fault.HTML_PAGE
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineProtocolError) as caught:
            await client.system.info()
    assert str(caught.value).startswith("this does not look like a Docker daemon: text/html answer (200 OK)")


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.NO_CONTENT, "204 No Content"), (Fault.NOT_MODIFIED, "304 Not Modified")],
)
async def test_an_empty_answer_where_json_belongs_names_the_status(
    fake_engine: FakeEngines, fault: Fault, status: str
) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["containers"] = fault
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineProtocolError) as caught:
            await client.containers.list(all=True)
    assert f"answered {status} with an empty body where JSON was expected" in str(caught.value)


async def test_a_302_without_location_names_the_status(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["info"] = Fault.FOUND_EMPTY
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineProtocolError, match="answered 302 Found, a redirect without a Location"):
            await client.system.info()


async def test_a_100kb_header_is_named(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["containers"] = Fault.HUGE_HEADER
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineProtocolError) as caught:
            await client.containers.list(all=True)
    assert "has a status line or header larger than 8190 bytes" in str(caught.value)


async def test_a_body_cut_short_is_a_transport_failure(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    eng.behaviour.faults["containers"] = Fault.RESET_MID_BODY
    async with DockerClient(eng.url) as client:
        with pytest.raises(EngineUnreachable) as caught:
            await client.containers.list(all=True)
    assert "cut short its answer to GET /containers/json" in str(caught.value)
    assert "Not enough data to satisfy content length header" in str(caught.value)
    assert "400, message" not in str(caught.value)  # aiohttp's made-up status stays out


async def test_a_name_that_does_not_resolve_says_so() -> None:
    async with DockerClient("tcp://docker01.invalid:2375") as client:
        with pytest.raises(EngineUnreachable) as caught:
            await client.system.ping()
    assert str(caught.value).startswith("cannot resolve docker01.invalid: ")
    assert "unknown error" not in str(caught.value)


async def test_container_states_in_metrics_are_the_known_set_plus_other(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=30)
    for i, container in enumerate(eng.state.containers.values()):
        if i % 3:
            container.state = f"minted-by-the-daemon-{i}"  # a label value per container, unbounded
    cfg = tmp_path / "fleetd.yaml"
    cfg.write_text(f"snapshots: {{enabled: false}}\nhosts:\n  - {{name: h, url: '{eng.url}'}}\n")
    client = FleetClient(Fleet(load_config(cfg)))
    await client.start_server()
    try:
        deadline = time.monotonic() + 10
        while "fleetd_host_containers{" not in (text := await (await client.get("/metrics")).text()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    states = set(re.findall(r'fleetd_host_containers\{host="h",state="([^"]+)"\}', text))
    assert "other" in states and states <= KNOWN_CONTAINER_STATES | {"other"}
    assert re.search(r'fleetd_host_containers\{host="h",state="other"\} 20\.0', text)
