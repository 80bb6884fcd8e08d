"""The state announces its changes: what the poller and other writers publish, and slow subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from fleetd.config.model import HostSettings, PollSettings, Settings, SnapshotSettings
from fleetd.dockerapi import EngineConnections
from fleetd.fleet.changes import (
    Change,
    ChangeBatch,
    ChangeHub,
    ContainerAdded,
    ContainerChanged,
    ContainerRemoved,
    FleetReady,
    HostAdded,
    HostChanged,
    HostRemoved,
    HostResynced,
    Lagged,
    Subscription,
)
from fleetd.fleet.poller import Poller
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.runtime import Fleet
from tests.fakes import FakeEngines
from tests.harness import eventually
from tests.unit.snapshotkit import container


async def next_changes(sub: Subscription, timeout: float = 5.0) -> list[Change]:
    item = await asyncio.wait_for(sub.get(), timeout)
    assert isinstance(item, ChangeBatch), item
    return list(item.changes)


async def collect_until(sub: Subscription, want: type, timeout: float = 5.0) -> list[Change]:
    """Every change up to and including the first of type ``want``."""
    seen: list[Change] = []
    async with asyncio.timeout(timeout):
        while not any(isinstance(c, want) for c in seen):
            seen += await next_changes(sub, timeout)
    return seen


def test_a_slow_subscriber_is_told_it_lagged_and_never_blocks_the_writer() -> None:
    hub = ChangeHub()
    slow = hub.subscribe(maxsize=3)
    fast = hub.subscribe(maxsize=100)
    for i in range(10):
        assert hub.publish([HostAdded(f"h{i}")]) == i + 1
    first = slow.get_nowait()
    assert isinstance(first, Lagged) and first.seq == 10 and first.dropped == 10
    assert slow.get_nowait() is None  # dropped, not delivered late
    got = [fast.get_nowait() for _ in range(10)]
    assert [b.seq for b in got if isinstance(b, ChangeBatch)] == list(range(1, 11))
    hub.publish([HostAdded("after")])
    after = slow.get_nowait()
    assert isinstance(after, ChangeBatch) and after.seq == 11
    assert hub.publish([]) == 11  # nothing to say: no batch, no new seq
    slow.close()
    fast.close()
    assert hub.subscribers == 0


async def test_a_subscriber_with_wants_is_offered_only_batches_holding_a_change_it_wants() -> None:
    hub = ChangeHub()
    picky = hub.subscribe(maxsize=2, wants=lambda c: isinstance(c, HostAdded))
    every = hub.subscribe(maxsize=100)
    waiter = asyncio.ensure_future(picky.get())
    await asyncio.sleep(0)
    for i in range(5):  # changes it does not want: it neither wakes nor lags
        hub.publish([HostResynced(f"h{i}", False)])
    await asyncio.sleep(0)
    assert not waiter.done() and picky.pending() == 0
    hub.publish([HostResynced("h9", True), HostAdded("new")])  # one wanted change: the whole batch
    batch = await asyncio.wait_for(waiter, 1.0)
    assert isinstance(batch, ChangeBatch) and batch.seq == 6 and len(batch.changes) == 2
    assert every.pending() == 6
    picky.close()
    every.close()


async def test_a_waiting_subscriber_wakes_on_publish_and_iteration_ends_on_close() -> None:
    hub = ChangeHub()
    sub = hub.subscribe()
    waiter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    hub.publish([HostAdded("a")])
    batch = await asyncio.wait_for(waiter, 1)
    assert isinstance(batch, ChangeBatch) and batch.changes == (HostAdded("a"),)

    async def drain() -> list[ChangeBatch | Lagged]:
        return [item async for item in sub]

    task = asyncio.ensure_future(drain())
    await asyncio.sleep(0)
    hub.publish([HostAdded("b")])
    await asyncio.sleep(0)
    sub.close()
    items = await asyncio.wait_for(task, 1)
    assert [c for i in items if isinstance(i, ChangeBatch) for c in i.changes] == [HostAdded("b")]


@pytest.fixture
async def poller() -> AsyncIterator[Poller]:
    state = FleetState()
    connections = EngineConnections(keepalive=30)
    p = Poller(state, PollSettings(interval=30.0, timeout=1.0, max_backoff=1.0), connections)
    try:
        yield p
    finally:
        await p.aclose()
        await connections.aclose()


def host(name: str, url: str) -> HostSettings:
    return HostSettings(name=name, url=url, interval=30.0, timeout=1.0)


async def test_polls_announce_hosts_and_containers_only_when_something_changed(
    poller: Poller, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=4, seed=3)
    state = poller.state
    with state.changes.subscribe() as sub:
        await poller.start([host("a", eng.url)])
        first = await collect_until(sub, FleetReady)
        assert first[0] == HostAdded("a")
        assert HostChanged("a", HostStatus.UNKNOWN, HostStatus.UP) in first
        added = sorted(c.container.id for c in first if isinstance(c, ContainerAdded))
        assert added == sorted(eng.state.containers)

        await poller.refresh("a")  # nothing changed on the daemon: nothing announced
        assert sub.get_nowait() is None

        ids = list(eng.state.containers)
        stopped = eng.state.containers[ids[0]]
        stopped.state, stopped.finished_at = "exited", stopped.created + 1
        del eng.state.containers[ids[1]]
        seq = state.changes.seq
        await poller.refresh("a")
        changes = await next_changes(sub)
        assert state.changes.seq == seq + 1
        removed = [c for c in changes if isinstance(c, ContainerRemoved)]
        assert [c.container.id for c in removed] == [ids[1]]
        changed = {c.container.id: c for c in changes if isinstance(c, ContainerChanged)}
        assert ids[0] in changed and "state" in changed[ids[0]].fields
        assert changed[ids[0]].container.state == "exited"
        assert not [c for c in changes if isinstance(c, ContainerAdded)]


async def test_a_host_going_down_is_announced_once(poller: Poller, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1)
    with poller.state.changes.subscribe() as sub:
        await poller.start([host("a", eng.url)])
        await collect_until(sub, FleetReady)
        await eng.aclose()
        await poller.refresh("a")
        assert await next_changes(sub) == [HostChanged("a", HostStatus.UP, HostStatus.DOWN)]
        await poller.refresh("a")
        assert sub.get_nowait() is None  # still down: no news


async def test_other_writers_replace_rows_by_id_and_the_next_poll_compares_in_full(
    poller: Poller, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=3, seed=4)
    state = poller.state
    with state.changes.subscribe() as sub:
        await poller.start([host("a", eng.url)])
        await collect_until(sub, FleetReady)
        record = state.get("a")
        assert record is not None
        one = record.containers[0]
        dead = msgspec.structs.replace(one, state="dead", status="Dead")
        state.upsert_containers("a", [dead])
        assert await next_changes(sub) == [ContainerChanged("a", dead, ("state", "status"))]
        state.remove_containers("a", [record.containers[1].id])
        gone = await next_changes(sub)
        assert [type(c) for c in gone] == [ContainerRemoved]
        # The daemon still has both as they were: the poll puts them back, and says so.
        await poller.refresh("a")
        back = await next_changes(sub)
        assert {type(c) for c in back} == {ContainerAdded, ContainerChanged}
        assert len(state.get("a").containers) == 3  # type: ignore[union-attr]

        extra = container("a", "ghost")
        state.replace_containers("a", [*state.get("a").containers, extra], gap=True)  # type: ignore[union-attr]
        assert await next_changes(sub) == [ContainerAdded("a", extra), HostResynced("a", gap=True)]

        state.set_host_status("a", HostStatus.DOWN, "event stream lost")
        assert await next_changes(sub) == [HostChanged("a", HostStatus.UP, HostStatus.DOWN)]
        assert state.get("a").last_error == "event stream lost"  # type: ignore[union-attr]


async def test_wait_ready_wakes_on_the_change_signal(poller: Poller, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1, latency=0.2)
    waiting = asyncio.ensure_future(poller.state.wait_ready(timeout=10))
    await poller.start([host("a", eng.url), host("b", eng.url)])
    assert await asyncio.wait_for(waiting, 10) is True
    assert poller.state.is_ready()
    assert await FleetState().wait_ready(timeout=0.01) is True  # no hosts: ready at once
    slow = FleetState()
    slow.add(host("never", "tcp://127.0.0.1:9"))
    assert await slow.wait_ready(timeout=0.05) is False


def fleet_settings(tmp_path: Path, *hosts: HostSettings) -> Settings:
    return Settings(
        path=tmp_path / "fleetd.yaml",
        poll=PollSettings(interval=30.0, timeout=1.0, max_backoff=1.0),
        hosts=hosts,
        snapshots=SnapshotSettings(enabled=False, path=tmp_path / "fleetd.db"),
    )


async def test_the_fleet_owns_its_parts_and_findings_follow_a_reload_at_once(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=1)
    cfg = tmp_path / "fleetd.yaml"
    cfg.write_text("snapshots: {enabled: false}\nhosts:\n  - {name: a, url: 'unix:///nonexistent.sock'}\n")
    from fleetd.config import load_config

    events: list[str] = []

    class Part:
        async def start(self) -> None:
            events.append("start")

        async def aclose(self) -> None:
            events.append("close")

        async def reconfigure(self, settings: Settings) -> None:
            events.append(f"reconfigure {len(settings.hosts)}")

    fleet = Fleet(load_config(cfg))
    fleet.add_part(Part())
    async with fleet:
        assert events == ["start"]
        assert fleet.state.get("a").findings == ()  # type: ignore[union-attr]
        cfg.write_text(
            f"snapshots: {{enabled: false}}\nhosts:\n  - {{name: a, url: 'unix:///nonexistent.sock'}}\n"
            f"  - {{name: b, url: '{eng.url}'}}\n"
        )
        with fleet.state.changes.subscribe() as sub:
            report = await fleet.reload()
            assert report.added == ("b",)
            assert HostRemoved not in {type(c) for c in await next_changes(sub)}
        # The findings watch woke on the change signal, not on a timer tick.
        await eventually(lambda: fleet.state.get("b").insecure_transport, timeout=2)  # type: ignore[union-attr]
        assert events == ["start", "reconfigure 2"]
        assert (tmp_path / "fleetd.db").exists()  # the database belongs to the fleet, snapshots or not
        closing = asyncio.get_running_loop().time()
    assert events == ["start", "reconfigure 2", "close"]
    # no part held the close up (an event watcher once swallowed its cancellation: 15 s here)
    assert asyncio.get_running_loop().time() - closing < 5.0
    await fleet.aclose()  # twice is fine
    assert events.count("close") == 1
