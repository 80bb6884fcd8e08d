"""Cloned VMs (one engine ID, several hosts): the writer keeps who reports which ID (fleet/engine_ids.py),
and every reader answers from it: the summary's count, /metrics' gauge, the host list and detail views."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from fleetd.api.render import host_detail, host_view
from fleetd.config.model import HostSettings
from fleetd.fleet.state import FleetState
from fleetd.metrics import HostFamilies
from tests.unit.snapshotkit import NOW, Clock, facts
from tests.writes import poll_failed, poll_ok


def _scan(state: FleetState) -> dict[str, list[str]]:
    """Every host's last reported engine ID, grouped: what the readers must agree with."""
    by_id: dict[str, list[str]] = {}
    for r in state.records():
        if r.facts is not None and r.facts.engine_id:
            by_id.setdefault(r.facts.engine_id, []).append(r.name)
    return {k: sorted(v) for k, v in by_id.items() if len(v) > 1}


async def _gauge(state: FleetState) -> dict[str, float]:
    text = (await HostFamilies(state).render()).decode()
    (family,) = (f for f in text_string_to_metric_families(text) if f.name == "fleetd_host_duplicate_engine_id")
    return {s.labels["host"]: s.value for s in family.samples}


def _views(state: FleetState) -> dict[str, list[str]]:
    out = {}
    for r in state.records():
        listed = host_view(r, NOW, state.engine_twins(r.name))
        detail = host_detail(state, r, NOW)
        assert listed.duplicate_of == detail.duplicate_of and listed.duplicate_engine_id == bool(listed.duplicate_of)
        out[r.name] = detail.duplicate_of
    return out


async def test_every_reader_answers_the_clones_from_the_writers_map() -> None:
    state = FleetState(clock=Clock())
    for i, name in enumerate("abcd"):
        state.add(HostSettings(name=name, url=f"tcp://127.0.0.1:{2375 + i}"))
    poll_ok(state, "a", facts=facts(1, engine_id="CLONE"))
    poll_ok(state, "b", facts=facts(2, engine_id="CLONE"))
    poll_ok(state, "c", facts=facts(3, engine_id="SOLO"))
    poll_ok(state, "d", facts=facts(4, engine_id="", engine_id_volatile=True))  # podman: no ID kept
    assert state.duplicate_engine_ids() == _scan(state) == {"CLONE": ["a", "b"]}
    assert await _gauge(state) == {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}
    assert _views(state) == {"a": ["b"], "b": ["a"], "c": [], "d": []}
    assert state.summary().hosts.duplicate_engine_id == 2

    poll_failed(state, "a")  # down: its last known ID still counts (both are kept, both flagged)
    poll_ok(state, "b", facts=facts(2, engine_id="SOLO"))  # b's daemon now reports c's ID
    assert state.duplicate_engine_ids() == _scan(state) == {"SOLO": ["b", "c"]}
    assert await _gauge(state) == {"a": 0.0, "b": 1.0, "c": 1.0, "d": 0.0}
    assert _views(state) == {"a": [], "b": ["c"], "c": ["b"], "d": []}
    assert state.summary().hosts.duplicate_engine_id == 2

    state.remove("c")
    assert state.duplicate_engine_ids() == _scan(state) == {}
    assert await _gauge(state) == {"a": 0.0, "b": 0.0, "d": 0.0}
    assert state.summary().hosts.duplicate_engine_id == 0
