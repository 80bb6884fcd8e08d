"""Batch actions: selector semantics, bounded concurrency, isolation of failures, the endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fleetd.api.batch import MAX_RUNNING_BATCHES
from fleetd.config.model import HostSettings
from fleetd.dockerapi import DockerClient, EngineConflict, EngineUnreachable
from fleetd.fleet.records import ContainerRecord
from fleetd.fleet.state import ContainerQuery, FleetState
from fleetd.ops.batch import run_batch
from fleetd.ops.containers import ActionOptions
from fleetd.ops.selector import Selector, SelectorError, Target, resolve, validate
from fleetd.ops.targets import HostUnavailable
from tests.fakes import FakeEngines, Fault
from tests.unit.opskit import Tokens, host, settings, start_client
from tests.writes import poll_failed, poll_ok

TOKENS = Tokens(ci="operator")
OP = TOKENS.header("ci")

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


def _container(host_name: str, name: str, state: str = "running", **labels: str) -> ContainerRecord:
    return ContainerRecord(
        host=host_name,
        id=f"{host_name}-{name}-id",
        name=name,
        names=[name],
        image="img",
        image_id="sha256:1",
        command="",
        state=state,
        status="",
        health="none",
        created=None,
        labels=dict(labels),
        ports=[],
        observed_at=None,
    )


@pytest.fixture
def fleet() -> FleetState:
    state = FleetState(clock=lambda: 1000.0)
    for name in ("h1", "h2"):
        state.add(HostSettings(name=name, url="tcp://127.0.0.1:1"))
        rows = (
            _container(name, "web", app="web"),
            _container(name, "web-1", app="web"),
            _container(name, "web-2", "exited", app="web"),
            _container(name, "webhook", app="hooks"),
            _container(name, "api-1", app="api", tier="back"),
        )
        poll_ok(state, name, rows, at=990.0)
    poll_failed(state, "h2")  # down since, its containers the last known
    return state


def _names(targets: list[Target]) -> list[str]:
    return [f"{t.host}/{t.name}" for t in targets]


def test_name_is_exact_or_a_glob_never_a_substring(fleet: FleetState) -> None:
    assert _names(resolve(fleet, Selector(name="web", host=["h1"]))) == ["h1/web"]
    assert _names(resolve(fleet, Selector(name="web-*", host=["h1"]))) == ["h1/web-1", "h1/web-2"]
    assert _names(resolve(fleet, Selector(name="web*", host=["h1"]))) == [
        "h1/web",
        "h1/web-1",
        "h1/web-2",
        "h1/webhook",
    ]
    assert _names(resolve(fleet, Selector(name="eb", host=["h1"]))) == []
    assert _names(resolve(fleet, Selector(name="Web", host=["h1"]))) == []  # case matters
    assert _names(resolve(fleet, Selector(name="web-[12]", host=["h1"]))) == ["h1/web-1", "h1/web-2"]


def test_selector_fields_combine_with_and(fleet: FleetState) -> None:
    assert _names(resolve(fleet, Selector(label=["app=web"], state="running"))) == [
        "h1/web",
        "h1/web-1",
        "h2/web",
        "h2/web-1",
    ]
    assert _names(resolve(fleet, Selector(label=["app=api", "tier=back"]))) == ["h1/api-1", "h2/api-1"]
    assert _names(resolve(fleet, Selector(label=["app=api", "tier=front"]))) == []
    assert _names(resolve(fleet, Selector(label=["tier"], host=["h2"]))) == ["h2/api-1"]
    stale = {t.host: t.stale for t in resolve(fleet, Selector(name="api-1"))}
    assert stale == {"h1": False, "h2": True}  # the down host's containers are targets, marked stale


def test_selector_validation(fleet: FleetState) -> None:
    for bad in (None, Selector(), Selector(host=[]), Selector(label=[])):
        with pytest.raises(SelectorError, match="selector is required"):
            validate(bad, fleet)
    with pytest.raises(SelectorError, match="no host named 'h9'"):
        validate(Selector(host=["h9"]), fleet)
    with pytest.raises(SelectorError, match="key=value"):
        validate(Selector(label=["=x"]), fleet)
    with pytest.raises(SelectorError, match="state must be one of"):
        validate(Selector(state="sleeping"), fleet)
    assert validate(Selector(name="*"), fleet) == Selector(name="*")


class _StubContainers:
    def __init__(self, log: dict[str, int], fail: dict[str, Exception]) -> None:
        self.log = log
        self.fail = fail

    async def stop(self, ref: str, *, t: int | None = None) -> bool:
        self.log["now"] += 1
        self.log["max"] = max(self.log["max"], self.log["now"])
        self.log["calls"] += 1
        try:
            await asyncio.sleep(0.01)
            if ref in self.fail:
                raise self.fail[ref]
            return True
        finally:
            self.log["now"] -= 1


class _StubClient:
    def __init__(self, containers: _StubContainers) -> None:
        self.containers = containers


async def test_run_batch_is_bounded_and_isolates_failures() -> None:
    log = {"now": 0, "max": 0, "calls": 0}
    targets = [Target(f"h{i % 5}", f"c{i}", f"c{i}", "running", False) for i in range(100)]
    fail: dict[str, Exception] = {"c7": EngineConflict(409, "busy")}
    fail.update({t.id: EngineUnreachable("cannot connect") for t in targets if t.host == "h3"})
    stub = _StubClient(_StubContainers(log, fail))

    def client_for(host_name: str) -> DockerClient:
        if host_name == "h4":
            raise HostUnavailable(host_name, "disabled", "host 'h4' is disabled")
        return stub  # type: ignore[return-value]

    started = time.monotonic()
    results = await run_batch(targets, "stop", ActionOptions(), client_for, concurrency=20)
    assert time.monotonic() - started < 1.0
    assert [r.target.id for r in results] == [t.id for t in targets]  # in order, one each
    assert log["max"] == 20
    by_host: dict[str, list[bool]] = {}
    for r in results:
        by_host.setdefault(r.target.host, []).append(r.ok)
    assert all(by_host["h0"]) and all(by_host["h1"])
    assert by_host["h2"].count(False) == 1  # only c7
    assert not any(by_host["h3"]) and not any(by_host["h4"])
    h3 = [r for r in results if r.target.host == "h3"]
    assert sum(r.attempted for r in h3) < len(h3)  # once unreachable, the rest were not sent
    assert all(isinstance(r.error, EngineUnreachable) for r in h3)
    assert log["calls"] == 60 + sum(r.attempted for r in h3)


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(*hosts: HostSettings) -> Client:
        client = await start_client(settings(tmp_path, list(hosts), TOKENS.auth()))
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def test_batch_stop_by_label_with_one_host_down(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    a = await fake_engine(containers=30, seed=11)
    b = await fake_engine(containers=30, seed=12)
    client = await make_client(host("a", a.url, timeout=0.5), host("b", b.url, timeout=0.5))
    want_a = {c.id for c in a.state.containers.values() if c.labels["app"] == "web" and c.running}
    want_b = {c.id for c in b.state.containers.values() if c.labels["app"] == "web" and c.running}
    assert want_a and want_b
    await b.aclose()  # b goes down; its containers stay in the aggregate
    body = {"action": "stop", "selector": {"label": ["app=web"], "state": "running"}, "t": 1}
    resp = await client.post("/api/v1/actions", json=body, headers=OP)
    data = await resp.json()
    assert resp.status == 200, data
    results = {r["id"]: r for r in data["targets"]}
    assert set(results) == want_a | want_b
    assert all(results[i]["outcome"] == "ok" and results[i]["changed"] for i in want_a)
    for i in want_b:
        assert results[i]["outcome"] == "failed"
        assert results[i]["error"]["code"] == "engine_unreachable" and results[i]["error"]["status"] == 503
        assert "host b" in results[i]["error"]["message"]
    assert data["summary"] == {"targets": len(results), "ok": len(want_a), "failed": len(want_b)}
    assert not any(a.state.containers[i].running for i in want_a)  # the rest were stopped
    assert all(p.endswith("/stop?t=1") for p in a.paths() if "/stop" in p)
    listed = await (await client.get("/api/v1/containers", params={"host": "a"}, headers=OP)).json()
    assert {c["state"] for c in listed["containers"] if c["id"] in want_a} == {"exited"}


def actions_sent(eng: Any) -> list[tuple[str, str]]:
    """What changed something on the engine (the event watcher reads in the background: GETs)."""
    return [r for r in eng.requests if r[0] != "GET"]


async def test_dry_run_touches_nothing(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=20, seed=13)
    client = await make_client(host("h1", eng.url))
    before = actions_sent(eng)
    body = {"action": "remove", "selector": {"name": "*-web-*"}, "dry_run": True, "force": True}
    data = await (await client.post("/api/v1/actions", json=body, headers=OP)).json()
    expected = sorted(c.name for c in eng.state.containers.values() if "-web-" in c.name)
    assert expected and sorted(t["name"] for t in data["targets"]) == expected
    assert {t["outcome"] for t in data["targets"]} == {"dry_run"}
    assert actions_sent(eng) == before and len(eng.state.containers) == 20


async def test_name_never_matches_a_substring_end_to_end(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=0)
    client = await make_client(host("h1", eng.url))
    for name in ("web", "webhook"):
        resp = await client.post(
            "/api/v1/hosts/h1/containers", params={"name": name}, json={"Image": "redis:7.4"}, headers=OP
        )
        assert resp.status == 201
    data = await (
        await client.post(
            "/api/v1/actions", json={"action": "remove", "selector": {"name": "web"}}, headers=OP
        )
    ).json()
    assert [t["name"] for t in data["targets"]] == ["web"] and data["summary"]["ok"] == 1
    assert [c.name for c in eng.state.containers.values()] == ["webhook"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"action": "stop"}, "bad_selector"),
        ({"action": "stop", "selector": {}}, "bad_selector"),
        ({"action": "stop", "selector": {"name": "nothing-like-this"}}, "no_match"),
        ({"action": "stop", "selector": {"host": ["h9"]}}, "bad_selector"),
        ({"action": "stop", "selector": {"name": "x", "colour": "red"}}, "bad_body"),
        ({"action": "explode", "selector": {"name": "*"}}, "bad_body"),
        ({"action": "start", "selector": {"name": "*"}, "t": 5}, "bad_body"),
        ({"action": "stop", "selector": {"name": "*"}, "force": True}, "bad_body"),
        ({"action": "stop", "selector": {"name": 5}}, "bad_body"),
    ],
)
async def test_bad_requests_change_nothing(
    make_client: MakeClient, fake_engine: FakeEngines, body: dict[str, Any], code: str
) -> None:
    eng = await fake_engine(containers=5)
    client = await make_client(host("h1", eng.url))
    before = actions_sent(eng)
    resp = await client.post("/api/v1/actions", json=body, headers=OP)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == code
    assert actions_sent(eng) == before


async def test_allow_empty(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    client = await make_client(host("h1", eng.url))
    body = {"action": "stop", "selector": {"name": "none-*"}, "allow_empty": True}
    resp = await client.post("/api/v1/actions", json=body, headers=OP)
    data = await resp.json()
    assert resp.status == 200 and data["targets"] == [] and data["summary"]["targets"] == 0
    assert (await client.post("/api/v1/actions", data=b"", headers=OP)).status == 400
    assert (await client.post("/api/v1/actions", data=b"{", headers=OP)).status == 400


async def test_host_label_selects_only_hosts_carrying_it(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    prod, dev = await fake_engine(containers=3, seed=1), await fake_engine(containers=3, seed=2)
    client = await make_client(
        host("p1", prod.url, labels={"env": "prod", "rack": "r1"}), host("d1", dev.url, labels={"env": "dev"})
    )
    body = {"action": "stop", "selector": {"host_label": ["env=prod"], "name": "*"}, "dry_run": True}
    data = await (await client.post("/api/v1/actions", json=body, headers=OP)).json()
    assert {t["host"] for t in data["targets"]} == {"p1"} and len(data["targets"]) == 3
    body["selector"] = {"host_label": ["rack"], "label": ["nope=1"]}
    resp = await client.post("/api/v1/actions", json=body, headers=OP)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "no_match"
    body["selector"] = {"host_label": ["=x"]}
    resp = await client.post("/api/v1/actions", json=body, headers=OP)
    assert resp.status == 400 and "selector.host_label" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize("pattern", ["web", "web*", "*-1", "w?b", "*", "webhook", "[wc]*", "we", "eb"])
def test_name_means_one_thing_in_the_container_list_and_in_selectors(fleet: FleetState, pattern: str) -> None:
    selected = {(t.host, t.name) for t in resolve(fleet, Selector(name=pattern))}
    listed = {(c.host, c.name) for c in fleet.containers(ContainerQuery(name=pattern))}
    assert listed == selected
    if pattern in ("we", "eb"):
        assert not listed  # never a bare substring
    if pattern == "web":
        assert listed == {("h1", "web"), ("h2", "web")}  # not web-1, not webhook


async def test_batches_acting_at_once_are_capped_fleet_wide(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=8, seed=21)
    client = await make_client(host("h1", eng.url, timeout=10.0))
    eng.behaviour.slow_seconds = 1.5
    eng.behaviour.faults["restart"] = Fault.SLOW
    body = {"action": "restart", "selector": {"name": "*"}, "t": 0}
    answers = await asyncio.gather(
        *(client.post("/api/v1/actions", json=body, headers=OP) for _ in range(MAX_RUNNING_BATCHES + 2))
    )
    statuses = sorted(r.status for r in answers)
    assert statuses == [200] * MAX_RUNNING_BATCHES + [429, 429], statuses
    refused = [await r.json() for r in answers if r.status == 429]
    assert all(e["error"]["code"] == "too_many_batches" for e in refused)
    dry = {**body, "dry_run": True}
    assert (await client.post("/api/v1/actions", json=dry, headers=OP)).status == 200
    # the slots are given back: the next batch acts
    eng.behaviour.faults.pop("restart")
    assert (await client.post("/api/v1/actions", json=body, headers=OP)).status == 200
