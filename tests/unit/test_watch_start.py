"""Event watchers start after the start-up's first round, so the complete view does not wait behind them."""

from __future__ import annotations

from pathlib import Path

from fleetd.config import load_config
from fleetd.fleet.records import HostStatus
from fleetd.runtime import Fleet
from tests.fakes import FakeEngines, Fault
from tests.harness import eventually


def _events_asked(paths: list[str]) -> int:
    return sum(1 for p in paths if p.split("?")[0].endswith("/events"))


async def test_watchers_connect_once_every_first_poll_has_ended(tmp_path: Path, fake_engine: FakeEngines) -> None:
    fast = await fake_engine(containers=2)
    slow = await fake_engine(containers=2)
    slow.behaviour.faults["info"] = Fault.SLOW
    slow.behaviour.slow_seconds = 1.0
    cfg = tmp_path / "fleetd.yaml"
    cfg.write_text(
        "snapshots: {enabled: false}\npoll: {interval: 30s, timeout: 5s}\nhosts:\n"
        f"  - {{name: fast, url: '{fast.url}'}}\n  - {{name: slow, url: '{slow.url}'}}\n"
    )
    async with Fleet(load_config(cfg)) as fleet:
        state = fleet.state

        def status(name: str) -> HostStatus:
            record = state.get(name)
            assert record is not None
            return record.status

        await eventually(lambda: status("fast") is HostStatus.UP, timeout=5)
        # fast is up, slow's first poll is still waiting for /info: nobody watches yet, and fast's
        # rows were listed once (its poll), not a second time by a watcher
        assert status("slow") is HostStatus.UNKNOWN
        assert _events_asked(fast.paths()) == 0
        assert sum(1 for p in fast.paths() if "/containers/json" in p) == 1
        await eventually(lambda: status("slow") is HostStatus.UP, timeout=5)
        # the round has ended: both watchers subscribe (then list, as ever)
        await eventually(lambda: _events_asked(fast.paths()) == 1 and _events_asked(slow.paths()) == 1, timeout=5)
        await eventually(lambda: sum(1 for p in fast.paths() if "/containers/json" in p) == 2, timeout=5)


async def test_a_host_added_later_is_watched_after_its_own_first_poll(tmp_path: Path, fake_engine: FakeEngines) -> None:
    a = await fake_engine(containers=1)
    b = await fake_engine(containers=1)
    cfg = tmp_path / "fleetd.yaml"
    cfg.write_text(f"snapshots: {{enabled: false}}\npoll: {{interval: 30s}}\nhosts:\n  - {{name: a, url: '{a.url}'}}\n")
    async with Fleet(load_config(cfg)) as fleet:
        await eventually(lambda: _events_asked(a.paths()) == 1, timeout=5)
        cfg.write_text(cfg.read_text() + f"  - {{name: b, url: '{b.url}'}}\n")
        await fleet.reload()
        await eventually(lambda: _events_asked(b.paths()) == 1, timeout=5)
        record = fleet.state.get("b")
        assert record is not None and record.first_poll_done
