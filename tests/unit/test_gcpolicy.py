"""The cyclic collector's pace (fleetd/service/gcpolicy.py): start-up's survivors frozen once the fleet is
ready, then young collections on a timer with their survivors frozen, and the periodic full collection
that finds reference cycles hidden among frozen objects."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetd.config.gc import GcSettings
from fleetd.config.model import HostSettings, Settings
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState, PollFailure
from fleetd.service import gcpolicy
from fleetd.service.gcpolicy import CollectorPolicy, resident_bytes
from tests.harness import eventually

if TYPE_CHECKING:
    from conftest import ConfigDir


@pytest.fixture
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def _fleet() -> FleetState:
    state = FleetState()
    state.add(HostSettings(name="a", url="tcp://127.0.0.1:1", interval=10.0, timeout=1.0))
    return state


def _ready(state: FleetState) -> None:
    state.poll_done("a", 0.01, PollFailure(0.0, HostStatus.DOWN, "refused"))  # the first attempt


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref[Node]:
    """A reference cycle nothing refers to any more (only the cyclic collector frees it)."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_start_up_objects_are_frozen_once_the_fleet_is_ready_and_settled(collector_restored: None) -> None:
    state = _fleet()
    policy = CollectorPolicy(state, GcSettings(young_every=0.05, full_every=0), settle=0.3)
    await policy.start()
    try:
        await asyncio.sleep(0.1)
        assert not policy.frozen and gc.get_freeze_count() == 0  # the fleet is not ready yet
        assert gc.isenabled()  # and CPython's own collector runs meanwhile
        _ready(state)
        await asyncio.sleep(0.1)
        # ready, but the collection waits: the first complete answer is not held back by it
        assert not policy.frozen and gc.get_freeze_count() == 0
        await eventually(lambda: policy.frozen)
        assert gc.get_freeze_count() > 0
        assert not gc.isenabled()  # paced from now on
    finally:
        await policy.aclose()
    assert gc.isenabled() and policy.pauses not in gc.callbacks


async def test_young_passes_free_new_cycles_and_freeze_the_survivors(collector_restored: None) -> None:
    state = _fleet()
    _ready(state)
    policy = CollectorPolicy(state, GcSettings(young_every=0.05, full_every=0), settle=0.0)
    await policy.start()
    try:
        await eventually(lambda: policy.frozen)
        frozen = gc.get_freeze_count()
        kept = [Node() for _ in range(1000)]  # survivors of the next young pass
        dead = _cycle()
        passes = policy.pauses.passes(0)
        await eventually(lambda: policy.pauses.passes(0) >= passes + 2)
        assert dead() is None  # a cycle that died young is freed by the paced pass
        assert gc.get_freeze_count() >= frozen + len(kept)  # the survivors went to the permanent generation
        assert gc.get_count()[0] < 1000 and not gc.isenabled()
    finally:
        await policy.aclose()


async def test_the_full_collection_finds_cycles_that_died_frozen(collector_restored: None) -> None:
    state = _fleet()
    _ready(state)
    policy = CollectorPolicy(state, GcSettings(young_every=0.05, full_every=0.5), settle=0.0)
    await policy.start()
    try:
        await eventually(lambda: policy.frozen)
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        passes = policy.pauses.passes(0)
        await eventually(lambda: policy.pauses.passes(0) >= passes + 2)  # frozen by a young pass
        del a, b  # now only a full collection over the frozen objects can free them
        found = policy.pauses.frozen_garbage
        await asyncio.sleep(0.2)
        assert ref() is not None  # young passes do not walk frozen objects
        await eventually(lambda: policy.pauses.frozen_garbage >= found + 2, timeout=3)
        assert ref() is None
        assert gc.get_freeze_count() > 0  # and what survived is frozen again
    finally:
        await policy.aclose()


async def test_memory_growth_brings_the_full_collection_forward(collector_restored: None) -> None:
    """Cycles that died frozen wait at most until resident memory has grown by GROWTH, not for the period."""
    rss = [400 * 1024 * 1024]
    state = _fleet()
    _ready(state)
    policy = CollectorPolicy(state, GcSettings(young_every=0.05, full_every=3600), settle=0.0, resident=lambda: rss[0])
    await policy.start()
    try:
        await eventually(lambda: policy.frozen)
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        passes = policy.pauses.passes(0)
        await eventually(lambda: policy.pauses.passes(0) >= passes + 2)  # frozen by a young pass
        del a, b
        rss[0] += int(400 * 1024 * 1024 * gcpolicy.GROWTH) - 1  # just short of the bound: nothing early
        passes = policy.pauses.passes(0)
        await eventually(lambda: policy.pauses.passes(0) >= passes + 3)
        assert policy.full_passes == 0 and ref() is not None
        rss[0] += 1
        await eventually(lambda: policy.full_passes == 1, timeout=3)
        assert ref() is None
        passes = policy.pauses.passes(0)
        await eventually(lambda: policy.pauses.passes(0) >= passes + 3)
        assert policy.full_passes == 1  # the bound is measured from the last full collection again
    finally:
        await policy.aclose()


def test_resident_bytes_reads_this_process() -> None:
    value = resident_bytes()
    if not Path("/proc/self/statm").exists():
        assert value is None
        return
    assert value is not None and 1024 * 1024 < value < 64 * 1024**3


async def test_young_every_zero_leaves_cpython_s_collector_on_and_a_reload_switches(
    collector_restored: None, tmp_path: Path
) -> None:
    state = _fleet()
    _ready(state)
    policy = CollectorPolicy(state, GcSettings(young_every=0, full_every=0), settle=0.0)
    await policy.start()
    try:
        await eventually(lambda: policy.frozen)
        await asyncio.sleep(0.1)
        assert gc.isenabled()
        await policy.reconfigure(Settings(path=tmp_path / "f.yaml", gc=GcSettings(young_every=0.05, full_every=0)))
        await eventually(lambda: not gc.isenabled())
        await policy.reconfigure(Settings(path=tmp_path / "f.yaml", gc=GcSettings(young_every=0, full_every=0)))
        await eventually(gc.isenabled)
    finally:
        await policy.aclose()


async def test_every_pass_is_timed_into_the_metrics(collector_restored: None) -> None:
    state = _fleet()
    _ready(state)
    policy = CollectorPolicy(state, GcSettings(young_every=0.05, full_every=0), settle=0.0)
    registry = CollectorRegistry()
    registry.register(policy.pauses)
    await policy.start()
    try:
        await eventually(lambda: policy.pauses.passes(0) >= 3)
        gc.collect(1)
        text = generate_latest(registry).decode()
    finally:
        await policy.aclose()
    count = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fleetd_gc_pause_seconds_count")
    }
    assert count["0"] >= 3 and count["1"] >= 1 and count["2"] >= 1  # the start-up collection is a full one
    assert 'fleetd_gc_pause_seconds_bucket{generation="0",le="+Inf"}' in text
    assert "fleetd_gc_frozen_garbage_objects_total 0.0" in text


def test_gc_settings_are_read_and_checked(cfg: ConfigDir) -> None:
    assert cfg.load("log: {level: info}\n").gc == GcSettings(young_every=0.5, full_every=3600.0)
    assert cfg.load("gc: {young_every: 500ms, full_every: 6h}\n").gc == GcSettings(0.5, 6 * 3600.0)
    assert cfg.load("gc: {young_every: 0, full_every: 0}\n").gc == GcSettings(0.0, 0.0)
    problems = [str(p) for p in cfg.problems("gc: {young_every: 10ms, full_every: 5s}\n")]
    assert f"{cfg.main}:1: gc.young_every: must be 0 (automatic) or at least 50ms, got 0.01s" in problems
    assert f"{cfg.main}:1: gc.full_every: must be 0 (never) or at least 10s, got 5s" in problems
    too_long = cfg.problems("gc: {young_every: 2m}\n")
    assert any(str(p).startswith(f"{cfg.main}:1: gc.young_every: must be at most") for p in too_long)
    assert any("gc.freeze" in str(p) for p in cfg.problems("gc: {freeze: true}\n"))
