"""Lean safety-net polls: while a host's event stream is healthy its polls list the containers alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from fleetd.config.model import HostSettings, PollSettings
from fleetd.dockerapi import DockerClient, EngineConnections, ImageSummary, SystemInfo
from fleetd.dockerapi.exchange import Done
from fleetd.dockerapi.pinger import RawPinger, images, info_raw, list_all_body, raw_pinger
from fleetd.fleet.poller import Poller
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.fleet.watch import FILTERS, HostWatcher, WatchSettings
from tests.fakes import FakeEngine, FakeEngines, Fault, docker_20_10
from tests.fakes.proxy import EventsProxy
from tests.harness import eventually
from tests.unit.watchkit import MemoryTarget


class FakeNet:
    """A watcher as the poll path sees it; ``lists`` go through the Engine client (``task_lists``:
    the host's task asked), or, ``by_callback``, lean ones on a raw pinger's kept connection."""

    def __init__(self, poller: Poller, host: str, *, by_callback: bool = False) -> None:
        self.poller = poller
        self.host = host
        self.healthy = True
        self.by_callback = by_callback
        self.hang = False  # by callback: send nothing, so no answer ever comes
        self.lists = 0
        self.task_lists = 0
        self.sent = 0
        self.cancelled = 0
        self.infos = 0
        self.image_lists = 0
        self.answers = 0
        self.pinger: RawPinger | None = None

    def lean(self) -> bool:
        return self.healthy

    async def list_body(self, timeout: float) -> bytes:
        client = self.poller.client(self.host)
        assert client is not None
        self.lists += 1
        self.task_lists += 1
        return await client.containers.list_body(all=True, timeout=timeout)

    def send_list(self, done: Done) -> bool:
        client = self.poller.client(self.host)
        if not self.by_callback or client is None or client.api_version is None:
            return False
        self.lists += 1
        self.sent += 1
        if self.hang:
            return True
        if self.pinger is None:
            self.pinger = raw_pinger(client)
            assert self.pinger is not None
        self.pinger.send(f"/v{client.api_version}/containers/json?all=1".encode(), client.limits.containers, done)
        return True

    def cancel_list(self, done: Done) -> None:
        self.cancelled += 1
        if self.pinger is not None:
            self.pinger.cancel(done)

    async def info_raw(self, timeout: float) -> tuple[SystemInfo, msgspec.Raw]:
        client = self.poller.client(self.host)
        assert client is not None
        self.infos += 1
        return await client.system.info_raw(timeout=timeout)

    async def images(self, timeout: float) -> list[ImageSummary]:
        client = self.poller.client(self.host)
        assert client is not None
        self.image_lists += 1
        return await client.images.list(timeout=timeout)

    def answered(self) -> None:
        self.answers += 1


class Rig:
    def __init__(self, images_every: int, by_callback: bool = False) -> None:
        self.state = FleetState()
        self.connections = EngineConnections(keepalive=30)
        self.poll = PollSettings(interval=0.15, timeout=1.0, images_every=images_every, jitter=0.0)
        self.poller = Poller(self.state, self.poll, self.connections)
        self.net = FakeNet(self.poller, "h", by_callback=by_callback)

    async def start(self, url: str, phase: int = 0) -> None:
        self.poller.attach("h", self.net)
        await self.poller.start([HostSettings(name="h", url=url, interval=0.15, timeout=1.0)])
        self.poller._loops["h"].images_phase = phase  # set before the second poll
        await eventually(lambda: self.status() is HostStatus.UP, what="first poll")

    def status(self) -> HostStatus:
        record = self.state.get("h")
        assert record is not None
        return record.status


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    param = getattr(request, "param", 1000)
    images_every, by_callback = param if isinstance(param, tuple) else (param, False)
    r = Rig(images_every=images_every, by_callback=by_callback)
    try:
        yield r
    finally:
        await r.poller.aclose()
        if r.net.pinger is not None:
            r.net.pinger.close()
        await r.connections.aclose()


def count(engine: FakeEngine, suffix: str) -> int:
    return sum(1 for p in engine.paths() if p.split("?")[0].endswith(suffix))


@pytest.mark.parametrize("rig", [(1000, False), (1000, True)], indirect=True, ids=["task", "callback"])
async def test_a_healthy_stream_leaves_info_out_until_asked(rig: Rig, fake_engine: FakeEngines) -> None:
    engine = await fake_engine(docker_20_10(containers=4))
    await rig.start(engine.url)  # the first poll asks /info: the host has no facts yet
    assert count(engine, "/info") == 1
    record = rig.state.get("h")
    assert record is not None and record.facts is not None
    facts, seen = record.facts, record.last_seen
    await eventually(lambda: rig.net.lists >= 5, what="lean polls")
    assert count(engine, "/info") == 1  # none of them asked /info
    assert record.facts is facts and record.last_seen > seen  # facts kept, the host seen again
    assert rig.net.answers >= rig.net.lists - 1  # every answered poll counts as a sign of life
    if rig.net.by_callback:  # the lean polls went out from the timer, none through the task
        assert rig.net.sent == rig.net.lists >= 5 and rig.net.task_lists == 0
        assert rig.net.pinger is not None and rig.net.pinger.transport is not None

    cid = next(iter(engine.state.containers))
    engine.set_state(cid, "exited", 1)  # a lean poll still compares the rows (the drift check)
    await eventually(lambda: next(c for c in record.containers if c.id == cid).state == "exited")

    rig.poller.want_info("h")  # the stream reconnected, or the daemon reloaded
    await eventually(lambda: count(engine, "/info") == 2, what="/info asked again")
    assert rig.net.infos == 1  # on the watcher's kept connection: the stream is healthy
    lists = rig.net.lists
    await eventually(lambda: rig.net.lists >= lists + 3, what="lean again")
    assert count(engine, "/info") == 2

    rig.net.healthy = False  # the stream is down or resyncing: full polls, through the client
    await asyncio.sleep(0.2)  # a lean poll sent just before may still be answered
    info, lists = count(engine, "/info"), rig.net.lists
    await eventually(lambda: count(engine, "/info") >= info + 3, what="full polls")
    assert rig.net.infos == 1 and rig.net.lists == lists


@pytest.mark.parametrize("rig", [3], indirect=True)
@pytest.mark.parametrize("phase", [0, 1])
async def test_polls_that_list_images_ask_info_too(rig: Rig, fake_engine: FakeEngines, phase: int) -> None:
    engine = await fake_engine(docker_20_10(containers=2))
    await rig.start(engine.url, phase)
    await eventually(lambda: rig.net.lists >= 6, what="lean polls")
    assert count(engine, "/images/json") >= 2
    # the host's own phase says which poll of three is the full one (hosts started together spread)
    paths = [p.split("?")[0] for p in engine.paths()]
    infos = [i for i, p in enumerate(paths) if p.endswith("/info")]  # the first poll, then the full ones
    between = paths[infos[0] : infos[1]]
    assert sum(1 for p in between if p.endswith("/containers/json")) == 3 - phase
    # every /info after the first came with an image listing (the first poll leaves images out)
    assert count(engine, "/info") - 1 in (count(engine, "/images/json") - 1, count(engine, "/images/json"))
    # and, with the stream healthy, they came through the watcher (its kept connection)
    assert rig.net.infos == count(engine, "/info") - 1
    assert rig.net.image_lists >= count(engine, "/images/json") - 1 >= 1


@pytest.mark.parametrize("rig", [(1000, False), (1000, True)], indirect=True, ids=["task", "callback"])
async def test_a_host_that_failed_is_polled_in_full_when_it_answers_again(
    rig: Rig, fake_engine: FakeEngines
) -> None:
    engine = await fake_engine(docker_20_10(containers=2))
    await rig.start(engine.url)
    await eventually(lambda: rig.net.lists >= 2)
    engine.behaviour.faults["containers"] = Fault.STATUS_500
    await eventually(lambda: rig.status() is HostStatus.ERROR, what="error")
    record = rig.state.get("h")
    assert record is not None and record.last_error is not None and "500" in record.last_error
    if rig.net.by_callback:  # the raw 500 went back to the task, whose client said what was wrong
        assert rig.net.sent >= 1 and rig.net.task_lists >= 1
    info = count(engine, "/info")
    del engine.behaviour.faults["containers"]
    await eventually(lambda: rig.status() is HostStatus.UP, what="back")
    assert count(engine, "/info") > info  # the recovering poll was a full one


async def test_the_raw_list_is_the_clients_list(fake_engine: FakeEngines) -> None:
    engine = await fake_engine(docker_20_10(containers=3))
    async with DockerClient(engine.url) as client:
        pinger = raw_pinger(client)
        assert pinger is not None
        try:
            first = await list_all_body(pinger, client, timeout=1.0)  # no version yet: the client
            assert client.api_version is not None
            raw = await list_all_body(pinger, client, timeout=1.0)
            assert raw == first == await client.containers.list_body(all=True)
            assert engine.requests[-2][1].startswith(f"/v{client.api_version}/containers/json?all=1")
            engine.behaviour.faults["containers"] = Fault.STATUS_500
            with pytest.raises(Exception, match="500"):  # the raw 500 falls back; the client says why
                await list_all_body(pinger, client, timeout=1.0)
            # a full poll's /info and images over the kept connection: what the client returns
            sent = len(engine.requests)
            info, body = await info_raw(pinger, client, timeout=1.0)
            client_info, client_body = await client.system.info_raw()
            assert info == client_info  # the verbatim answers differ only in the daemon's clock
            assert msgspec.json.decode(body).keys() == msgspec.json.decode(client_body).keys()
            assert await images(pinger, client, timeout=1.0) == await client.images.list()
            assert [p for _, p in engine.requests[sent:]] == [
                f"/v{client.api_version}/info", f"/v{client.api_version}/info",
                f"/v{client.api_version}/images/json", f"/v{client.api_version}/images/json",
            ]  # fmt: skip
            assert pinger.transport is not None  # the raw ones went over the kept connection
        finally:
            pinger.close()


async def test_the_watcher_asks_info_after_a_reconnect_and_a_daemon_reload() -> None:
    assert "daemon" in FILTERS["type"]
    settings = WatchSettings(liveness=0, timeout=1.0, flush_delay=0.05, backoff_min=0.1, backoff_max=0.3)
    async with (
        FakeEngine(docker_20_10(containers=2)) as engine,
        EventsProxy(("127.0.0.1", engine.port)) as proxy,
    ):
        client = DockerClient(proxy.url)
        target = MemoryTarget(client)
        watcher = HostWatcher("h1", client, target, settings)
        watcher.start()
        try:
            await eventually(lambda: watcher.connected and watcher.lean(), what="synced")
            assert target.info_wanted == 0  # the first poll just asked it
            engine.events.publish("daemon", "reload", "engine-id", {})
            await eventually(lambda: target.info_wanted == 1, what="reload")
            proxy.sever()
            await eventually(lambda: not watcher.lean(), timeout=2, what="not lean while down")
            await eventually(lambda: watcher.lean() and target.info_wanted == 2, what="reconnected")
            assert await watcher.list_body(1.0) == await client.containers.list_body(all=True)
        finally:
            await watcher.aclose()
            await client.aclose()
        await asyncio.sleep(0)


@pytest.mark.parametrize("rig", [(1000, True)], indirect=True)
async def test_a_lean_poll_by_callback_without_an_answer_is_a_failed_poll(rig: Rig, fake_engine: FakeEngines) -> None:
    engine = await fake_engine(docker_20_10(containers=2))
    await rig.start(engine.url)
    await eventually(lambda: rig.net.sent >= 2, what="lean polls by callback")
    rig.net.hang = True
    await eventually(lambda: rig.status() is HostStatus.DOWN, timeout=3, what="down after the timeout")
    record = rig.state.get("h")
    assert record is not None and record.last_error is not None
    assert record.last_error.startswith("no answer within 1s to GET /containers/json on ")
    assert rig.net.cancelled >= 1  # the stuck exchange was given up (its connection dropped)
    rig.net.hang = False  # answered again: back up, with a full poll through the task (not lean while down)
    info = count(engine, "/info")
    await eventually(lambda: rig.status() is HostStatus.UP, timeout=5, what="back up")
    assert count(engine, "/info") > info


@pytest.mark.parametrize("rig", [(1000, True)], indirect=True)
async def test_an_action_during_a_lean_poll_by_callback_polls_through_the_task(
    rig: Rig, fake_engine: FakeEngines
) -> None:
    engine = await fake_engine(docker_20_10(containers=2))
    await rig.start(engine.url)
    await eventually(lambda: rig.net.sent >= 2, what="lean polls by callback")
    rig.net.hang = True  # the next lean poll never hears back
    sent = rig.net.sent
    await eventually(lambda: rig.net.sent > sent, what="a lean poll under way")
    loop = rig.poller._loops["h"]
    assert loop.lean_poll is not None
    cid = next(iter(engine.state.containers))
    engine.set_state(cid, "exited", 3)
    await asyncio.wait_for(rig.poller.refresh("h"), 2)  # answered by the task, not the hung poll
    assert loop.lean_poll is None or rig.net.sent > sent + 1
    record = rig.state.get("h")
    assert record is not None and record.status is HostStatus.UP
    assert next(c for c in record.containers if c.id == cid).state == "exited"
    assert rig.net.task_lists >= 1
