"""The per-host families of ``/metrics``: valid text format, the right samples, and a scrape of a
large fleet hands the event loop back while it is written."""

from __future__ import annotations

import asyncio
import random
import time

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from fleetd.config.model import HostSettings
from fleetd.fleet.poll_results import PollFailure
from fleetd.fleet.records import ContainerRecord, EngineFacts, HostStatus, diff_containers
from fleetd.fleet.state import FleetState, PollSuccess
from fleetd.metrics import FleetMetrics, HostFamilies

FACTS = EngineFacts("E", "n", "27.5.1", "1.47", "Debian", "linux", "6.1", "x86_64", 4, 1 << 33, "overlay2")


def make(host: str, i: int, rng: random.Random) -> ContainerRecord:
    name = f"c{i}"
    return ContainerRecord(
        host=host, id=f"{host}-{i}".encode().hex().ljust(64, "0"), name=name, names=[name], image="app:1",
        image_id="sha256:" + "0" * 64, command="run", state=rng.choice(["running", "exited"]), status="Up",
        health="none", created="2026-11-01T00:00:00Z", labels={}, ports=[], observed_at=None,
    )


def _fleet(names: list[str], *, containers: int = 3) -> FleetState:
    state = FleetState()
    rng = random.Random(1)
    for n, name in enumerate(names):
        state.add(HostSettings(name=name, url=f"tcp://127.0.0.1:{21000 + n}", interval=30.0, timeout=5.0))
        rows = tuple(make(name, i, rng) for i in range(containers))
        state.poll_done(name, 0.25, PollSuccess(time.time(), FACTS, msgspec.Raw(b"{}"), rows, diff_containers((), rows)))
    return state


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_the_families_parse_and_carry_each_hosts_samples() -> None:
    odd = 'we"ird\\host\nname'  # a daemon cannot choose it, but nothing may break the format either
    state = _fleet(["a", "b", odd])
    state.add(HostSettings(name="off", url="tcp://127.0.0.1:1", interval=30.0, timeout=5.0, enabled=False))
    state.poll_done("b", 1.5, PollFailure(time.time(), HostStatus.DOWN, "connection refused"))
    text = (await HostFamilies(state).render()).decode()
    got = _samples(text)
    assert got[("fleetd_host_up", (("host", "a"),))] == 1.0
    assert got[("fleetd_host_up", (("host", odd),))] == 1.0
    assert got[("fleetd_host_up", (("host", "b"),))] == 0.0
    assert ("fleetd_host_up", (("host", "off"),)) not in got  # disabled: no sample to alert on
    assert got[("fleetd_host_state", (("host", "off"), ("state", "disabled")))] == 1.0
    assert got[("fleetd_host_state", (("host", "a"), ("state", "up")))] == 1.0
    assert got[("fleetd_host_state", (("host", "a"), ("state", "down")))] == 0.0
    assert got[("fleetd_host_consecutive_failures", (("host", "b"),))] == 1.0
    assert got[("fleetd_host_last_poll_duration_seconds", (("host", "b"),))] == 1.5
    assert got[("fleetd_host_polls_overdue_total", (("host", "a"),))] == 0.0
    assert got[("fleetd_host_stale", (("host", "b"),))] == 1.0
    record = state.get("a")
    assert record is not None and record.last_seen is not None
    assert got[("fleetd_host_last_success_timestamp_seconds", (("host", "a"),))] == record.last_seen
    by_state = {
        labels[1][1]: v for (name, labels), v in got.items() if name == "fleetd_host_containers" and labels[0][1] == "a"
    }
    assert by_state == {k: float(v) for k, v in record.tally().by_state.items()}
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["fleetd_host_polls_overdue"] == "counter" and types["fleetd_host_up"] == "gauge"
    assert text.count("# TYPE fleetd_host_up ") == 1  # each family once, its samples together


async def test_a_large_scrape_lets_other_work_run_while_it_is_written() -> None:
    state = _fleet([f"h{n:04d}" for n in range(1200)], containers=1)
    families = HostFamilies(state, chunk=100)
    ran_during: list[int] = []
    done = False

    async def other_work() -> None:
        while not done:
            ran_during.append(1)
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    ran_during.clear()
    body = await families.render()
    done = True
    await other
    assert len(ran_during) >= 1200 // 100 - 1  # the loop ran other work between chunks
    assert body.count(b"\nfleetd_host_up{") == 1200


async def test_the_exposition_is_the_registry_then_the_host_families() -> None:
    state = _fleet(["a"])

    class _Config:
        last_reload_ok = True
        last_reload_success = 1.0

    metrics = FleetMetrics(state, _Config())  # type: ignore[arg-type]
    metrics.observe_poll("a", 0.1, True)
    got = _samples((await metrics.exposition()).decode())
    assert got[("fleetd_config_last_reload_successful", ())] == 1.0
    assert got[("fleetd_poll_duration_seconds_count", (("outcome", "success"),))] == 1.0
    assert got[("fleetd_host_up", (("host", "a"),))] == 1.0
