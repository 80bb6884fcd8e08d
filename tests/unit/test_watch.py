"""HostWatcher against the fake Engine (and the events-only proxy): refreshes, resume, gaps, liveness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from fleetd.dockerapi import DockerClient
from fleetd.fleet.watch import HostWatcher, WatchSettings
from tests.fakes import FakeEngine, Fault, docker_20_10, podman
from tests.fakes.proxy import EventsProxy
from tests.unit.watchkit import MemoryTarget, eventually

FAST = WatchSettings(
    liveness=0.5, timeout=1.0, flush_delay=0.05, resume_window=1.0, backoff_min=0.1, backoff_max=0.3
)


@dataclass
class Rig:
    engine: FakeEngine
    proxy: EventsProxy
    client: DockerClient
    target: MemoryTarget
    watcher: HostWatcher


@pytest.fixture(params=["docker", "podman"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    behaviour = docker_20_10(containers=6) if request.param == "docker" else podman(containers=6)
    async with FakeEngine(behaviour) as engine, EventsProxy(("127.0.0.1", engine.port)) as proxy:
        client = DockerClient(proxy.url)
        target = MemoryTarget(client)
        watcher = HostWatcher("h1", client, target, FAST)
        watcher.start()
        try:
            await eventually(lambda: target.full_refreshes == 1 and watcher.connected, what="first sync")
            yield Rig(engine, proxy, client, target, watcher)
        finally:
            await watcher.aclose()
            await client.aclose()


def first_running(rig: Rig) -> str:
    return next(c.id for c in rig.engine.state.containers.values() if c.state == "running")


async def test_subscribes_before_listing(rig: Rig) -> None:
    paths = [p.split("?")[0] for p in rig.proxy.paths() if "/_ping" not in p]
    assert paths[0].endswith("/events") and paths[1].endswith("/containers/json")
    assert {r.id for r in rig.target.rows} == set(rig.engine.state.containers)


async def test_die_refreshes_one_row_exec_changes_nothing_remove_removes(rig: Rig) -> None:
    cid = first_running(rig)
    rig.engine.set_state(cid, "exited", 137)
    await eventually(lambda: next(r for r in rig.target.rows if r.id == cid).state == "exited", what="die")
    targeted = [p for p in rig.proxy.paths() if "filters=" in p and "/containers/json" in p]
    assert len(targeted) == 1 and cid in targeted[0]
    assert any(
        c == cid and cause.action == "die" and cause.exit_code == 137 for c, cause in rig.target.causes
    )
    before = rig.target.subset_refreshes
    for _ in range(30):
        rig.engine.exec_noise(cid)
    await asyncio.sleep(0.4)
    assert rig.target.subset_refreshes == before  # 90 exec events, no refresh
    # a removal event: the refresh finds no row
    gone = next(iter(rig.engine.state.containers.values()))
    del rig.engine.state.containers[gone.id]
    rig.engine.emit(gone, "remove" if rig.engine.behaviour.product == "podman" else "destroy")
    await eventually(lambda: gone.id not in {r.id for r in rig.target.rows}, what="removal")
    assert rig.target.full_refreshes == 1


async def test_short_cut_resumes_with_since_and_replays_the_die(rig: Rig) -> None:
    cid = first_running(rig)
    rig.engine.exec_noise(cid)  # an earlier event: the witness
    await eventually(lambda: rig.watcher.cursor is not None, what="cursor")
    cursor = rig.watcher.cursor
    rig.proxy.block_events(0.6)
    await asyncio.sleep(0.1)
    rig.engine.set_state(cid, "exited", 2)
    await eventually(lambda: rig.target.resyncs == [False], timeout=5, what="resume")
    await eventually(
        lambda: next(r for r in rig.target.rows if r.id == cid).state == "exited", what="die replayed"
    )
    assert rig.target.full_refreshes == 1  # no resync
    assert not rig.target.lost  # polls kept answering: the host was never down
    resumed = rig.proxy.event_requests()[-1]
    assert cursor is not None
    expected = f"since={(cursor - 10**9) // 10**9}.{(cursor - 10**9) % 10**9:09d}"
    assert expected in resumed


async def test_many_events_during_a_cut_force_a_resync_with_gap() -> None:
    async with (
        FakeEngine(docker_20_10(containers=4)) as engine,
        EventsProxy(("127.0.0.1", engine.port)) as proxy,
    ):
        client = DockerClient(proxy.url)
        target = MemoryTarget(client)
        watcher = HostWatcher("h1", client, target, FAST)
        watcher.start()
        try:
            await eventually(lambda: watcher.connected and target.full_refreshes == 1)
            cid = next(c.id for c in engine.state.containers.values() if c.state == "running")
            engine.exec_noise(cid)
            await eventually(lambda: watcher.cursor is not None)
            proxy.block_events(0.6)
            await asyncio.sleep(0.1)
            engine.set_state(cid, "exited", 1)
            for _ in range(100):
                engine.exec_noise(cid)  # 300 events: the witness falls out of the 256-event ring
            await eventually(lambda: target.resyncs == [True], timeout=5, what="resync with gap")
            assert target.full_refreshes == 2
            assert next(r for r in target.rows if r.id == cid).state == "exited"
        finally:
            await watcher.aclose()
            await client.aclose()


async def test_daemon_restart_is_a_gap(rig: Rig) -> None:
    cid = first_running(rig)
    rig.engine.exec_noise(cid)
    await eventually(lambda: rig.watcher.cursor is not None)
    if rig.engine.behaviour.product == "podman":
        rig.engine.events._log.clear()  # podman's log persists; a new log loses the witness too
    rig.engine.set_state(cid, "exited", 0)
    rig.engine.restart_daemon()
    rig.engine.events._log.clear()
    await eventually(lambda: rig.target.resyncs[-1:] == [True], timeout=5, what="gap after restart")
    assert next(r for r in rig.target.rows if r.id == cid).state == "exited"


async def test_frozen_daemon_is_down_within_liveness_and_timeout(rig: Rig) -> None:
    rig.engine.behaviour.faults["ping"] = Fault.HANG
    rig.proxy.freeze_events = True
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await eventually(lambda: rig.target.lost, timeout=FAST.liveness + FAST.timeout + 2, what="down")
    assert loop.time() - t0 <= FAST.liveness + FAST.timeout + 1.0
    del rig.engine.behaviour.faults["ping"]
    rig.proxy.freeze_events = False
    await eventually(lambda: rig.target.full_refreshes >= 2 and rig.watcher.connected, timeout=6, what="back")


async def test_stream_end_with_daemon_gone_is_down_at_once() -> None:
    engine = await FakeEngine(docker_20_10(containers=2)).start()
    client = DockerClient(engine.url)
    target = MemoryTarget(client)
    watcher = HostWatcher("h1", client, target, WatchSettings(liveness=60, timeout=1.0, backoff_min=0.1))
    watcher.start()
    try:
        await eventually(lambda: watcher.connected and target.full_refreshes == 1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await engine.aclose()
        await eventually(lambda: target.lost, timeout=3, what="down on EOF")
        assert loop.time() - t0 < 2.0
    finally:
        await watcher.aclose()
        await client.aclose()


async def test_drift_counts_only_what_no_event_explains(rig: Rig) -> None:
    loop = asyncio.get_running_loop()
    sent = loop.time()
    cid = first_running(rig)
    assert rig.watcher.unexplained([cid], sent) == [cid]  # no event about it: drift
    rig.engine.set_state(cid, "exited", 0)
    await eventually(lambda: cid in rig.watcher._recent)
    assert rig.watcher.unexplained([cid], sent) == []  # an event told of it
    assert rig.watcher.synced_at is not None
    assert rig.watcher.unexplained([cid], rig.watcher.synced_at - 1) == []  # poll older than the sync
    sessions = rig.watcher.sessions
    other = next(c.id for c in rig.engine.state.containers.values() if c.id != cid)
    assert rig.watcher.drift([other], sent) == 1
    await eventually(lambda: rig.watcher.sessions == sessions + 1 and rig.watcher.connected, what="reconnect")


async def test_a_daemon_frozen_right_after_an_event_is_down_within_liveness_of_that_event() -> None:
    """The ping goes out once the daemon has said nothing for ``liveness``: a stream busy until the
    freeze does not buy the daemon another period."""
    settings = WatchSettings(liveness=2.0, timeout=1.0, flush_delay=0.05, backoff_min=0.1, backoff_max=0.3)
    async with (
        FakeEngine(docker_20_10(containers=2)) as engine,
        EventsProxy(("127.0.0.1", engine.port)) as proxy,
    ):
        client = DockerClient(proxy.url)
        target = MemoryTarget(client)
        watcher = HostWatcher("h1", client, target, settings)
        watcher.start()
        try:
            await eventually(lambda: watcher.connected and target.full_refreshes == 1, what="connected")
            cid = next(iter(engine.state.containers))
            loop = asyncio.get_running_loop()
            for _ in range(15):  # 3 s of events: no ping is needed meanwhile
                engine.exec_noise(cid)
                await asyncio.sleep(0.2)
            engine.behaviour.faults["ping"] = Fault.HANG
            proxy.freeze_events = True
            frozen = loop.time()
            await eventually(
                lambda: target.lost, timeout=settings.liveness + settings.timeout + 3, what="down"
            )
            assert loop.time() - frozen <= settings.liveness + settings.timeout + 0.5
        finally:
            await watcher.aclose()
            await client.aclose()


async def test_refreshes_on_the_kept_connection_are_callbacks_and_survive_a_hang_and_a_bad_answer() -> None:
    """With a raw pinger a refresh is sent and applied by callbacks (no task); one that hangs is
    given up after the timeout and asked again on a new connection; a raw answer that is unusable
    is asked again through the client, which says what is wrong; the rows end right either way."""
    from fleetd.dockerapi.pinger import raw_pinger

    settings = WatchSettings(liveness=0, timeout=0.5, flush_delay=0.05, backoff_min=0.1, backoff_max=0.3)
    async with FakeEngine(docker_20_10(containers=6)) as engine, EventsProxy(("127.0.0.1", engine.port)) as proxy:
        client = DockerClient(proxy.url)
        target = MemoryTarget(client)
        pinger = raw_pinger(client)
        watcher = HostWatcher("h1", client, target, settings, pinger=pinger)
        by_client = 0
        through_client = watcher._refresh_by_client

        async def counted(*args: object) -> None:
            nonlocal by_client
            by_client += 1
            await through_client(*args)  # type: ignore[arg-type]

        watcher._refresh_by_client = counted  # type: ignore[method-assign]
        watcher.start()
        try:
            await eventually(lambda: target.full_refreshes == 1 and watcher.lean(), what="first sync")
            running = [c.id for c in engine.state.containers.values() if c.state == "running"]
            assert len(running) >= 3

            def state(cid: str) -> str:
                return next(r for r in target.rows if r.id == cid).state

            engine.set_state(running[0], "exited", 137)
            await eventually(lambda: state(running[0]) == "exited", what="die, by callback")
            assert by_client == 0 and watcher._refresh_task is None
            assert any(c == running[0] and cause.exit_code == 137 for c, cause in target.causes)

            engine.behaviour.faults["containers"] = Fault.HANG
            engine.set_state(running[1], "exited", 1)
            await asyncio.sleep(settings.timeout + 0.3)  # the refresh hangs, and is given up
            assert state(running[1]) == "running" and watcher._in_flight == 0
            del engine.behaviour.faults["containers"]
            await eventually(lambda: state(running[1]) == "exited", timeout=5, what="asked again")
            assert by_client == 0

            engine.behaviour.faults["containers"] = Fault.STATUS_500
            engine.set_state(running[2], "exited", 2)
            await eventually(lambda: by_client >= 1, what="the client asked after the raw 500")
            del engine.behaviour.faults["containers"]
            await eventually(lambda: state(running[2]) == "exited", timeout=5, what="applied after the 500")
        finally:
            await watcher.aclose()
            await client.aclose()
        assert watcher._flush_at is None and watcher._refresh_timer is None  # nothing left armed
