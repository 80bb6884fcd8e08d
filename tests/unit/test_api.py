"""The REST API over a poller fed by fake Engines."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fleetd.config.model import HostSettings, PollSettings, Settings, SnapshotSettings
from fleetd.runtime import Fleet
from tests.fakes import FakeEngines
from tests.fakes.behaviour import Fault, docker_20_10
from tests.harness import FleetClient, eventually

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[TestClient[Any, Any]] = []

    async def make(hosts: list[HostSettings], *, wait: bool = True) -> TestClient[Any, Any]:
        settings = Settings(
            path=tmp_path / "fleetd.yaml",
            poll=PollSettings(interval=1.0, timeout=0.5, max_backoff=1.0),
            hosts=tuple(hosts),
            snapshots=SnapshotSettings(enabled=False, path=tmp_path / "fleetd.db"),
        )
        client: TestClient[Any, Any] = FleetClient(Fleet(settings))
        await client.start_server()
        clients.append(client)
        if wait:
            await eventually(lambda: ready(client), timeout=5, interval=0.02, what="fleetd never became ready")
        return client

    yield make
    for c in clients:
        await c.close()


async def ready(client: TestClient[Any, Any]) -> bool:
    return (await client.get("/readyz")).status == 200


def host(name: str, url: str, **kw: Any) -> HostSettings:
    return HostSettings(name=name, url=url, interval=1.0, timeout=0.5, **kw)


async def test_hosts_and_containers_across_the_fleet(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    a = await fake_engine(docker_20_10(containers=3, seed=1))
    b = await fake_engine(containers=2, seed=2)
    client = await make_client(
        [host("b-host", b.url, labels={"env": "prod"}), host("a-host", a.url, labels={"env": "dev"})]
    )
    body = await (await client.get("/api/v1/hosts")).json()
    assert [h["name"] for h in body["hosts"]] == ["b-host", "a-host"]  # inventory order
    for h in body["hosts"]:
        assert h["state"] == "up" and h["stale"] is False
        assert RFC3339.match(h["last_seen"])
        for key in (
            "engine_id",
            "server_version",
            "api_version",
            "containers",
            "running",
            "duplicate_engine_id",
        ):
            assert key in h
    assert body["hosts"][1]["api_version"] == "1.41"
    body = await (await client.get("/api/v1/hosts", params={"label": "env=prod"})).json()
    assert [h["name"] for h in body["hosts"]] == ["b-host"]
    page = await (await client.get("/api/v1/hosts", params={"limit": "1", "offset": "1"})).json()
    assert [h["name"] for h in page["hosts"]] == ["a-host"] and (page["total"], page["offset"], page["limit"]) == (2, 1, 1)
    page = await (await client.get("/api/v1/hosts", params={"state": "up", "limit": "1"})).json()
    assert [h["name"] for h in page["hosts"]] == ["b-host"] and page["total"] == 2

    resp = await client.get("/api/v1/containers")
    data = await resp.json()
    assert resp.status == 200 and data["total"] == 5
    keys = [(c["host"], c["name"]) for c in data["containers"]]
    assert keys == sorted(keys)  # by host, then name
    c0 = data["containers"][0]
    for key in (
        "host",
        "id",
        "name",
        "names",
        "image",
        "image_id",
        "command",
        "state",
        "status",
        "health",
        "created",
        "labels",
        "ports",
        "observed_at",
        "stale",
    ):
        assert key in c0
    assert RFC3339.match(c0["created"]) and RFC3339.match(c0["observed_at"])

    page = await (await client.get("/api/v1/containers", params={"limit": "2", "offset": "1"})).json()
    assert page["total"] == 5 and [c["id"] for c in page["containers"]] == [
        c["id"] for c in data["containers"][1:3]
    ]

    only_a = await (await client.get("/api/v1/containers", params={"host": "a-host"})).json()
    assert {c["host"] for c in only_a["containers"]} == {"a-host"} and only_a["total"] == 3

    one = data["containers"][0]
    got = await (await client.get(f"/api/v1/containers/{one['host']}/{one['id'][:10]}")).json()
    assert got["id"] == one["id"]

    detail = await (await client.get("/api/v1/hosts/a-host")).json()
    assert detail["info"]["ServerVersion"] == "20.10.24+dfsg1"

    summary = await (await client.get("/api/v1/summary")).json()
    assert summary["hosts"]["by_state"]["up"] == 2 and summary["containers"]["total"] == 5
    assert sum(summary["images"].values()) == 5


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/v1/hosts/nope", {}, 404, "unknown_host"),
        ("/api/v1/containers", {"host": "nope"}, 404, "unknown_host"),
        ("/api/v1/containers/ok/ffffffffffff", {}, 404, "unknown_container"),
        ("/api/v1/containers", {"limit": "x"}, 400, "bad_parameter"),
        ("/api/v1/containers", {"offset": "-1"}, 400, "bad_parameter"),
        ("/api/v1/containers", {"state": "sleeping"}, 400, "bad_parameter"),
        ("/api/v1/containers", {"stale": "maybe"}, 400, "bad_parameter"),
        ("/api/v1/containers", {"colour": "red"}, 400, "unknown_parameter"),
        ("/api/v1/hosts", {"state": "happy"}, 400, "bad_parameter"),
        ("/api/v1/hosts", {"limit": "-1"}, 400, "bad_parameter"),
        ("/api/v1/nothing-here", {}, 404, "not_found"),
    ],
)
async def test_errors_are_json_with_an_actionable_message(
    make_client: MakeClient,
    fake_engine: FakeEngines,
    path: str,
    params: dict[str, str],
    status: int,
    code: str,
) -> None:
    eng = await fake_engine(containers=1)
    client = await make_client([host("ok", eng.url)])
    resp = await client.get(path, params=params)
    assert resp.status == status
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["error"]["code"] == code
    assert len(body["error"]["message"]) > 10


async def test_down_host_keeps_its_containers_as_stale(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=2)
    ok = await fake_engine(containers=1)
    client = await make_client([host("flaky", eng.url), host("fine", ok.url)])
    eng.behaviour.faults["*"] = Fault.CLOSE_CONNECTION
    hosts: dict[str, Any] = {}

    async def flaky_down() -> bool:
        hosts.update((h["name"], h) for h in (await (await client.get("/api/v1/hosts")).json())["hosts"])
        return bool(hosts["flaky"]["state"] == "down")

    await eventually(flaky_down, timeout=5, interval=0.05)
    assert hosts["flaky"]["stale"] is True and hosts["flaky"]["last_error"]
    assert hosts["fine"]["state"] == "up"
    stale = await (await client.get("/api/v1/containers", params={"stale": "true"})).json()
    assert stale["total"] == 2 and all(c["host"] == "flaky" and c["stale"] for c in stale["containers"])
    summary = await (await client.get("/api/v1/summary")).json()
    assert summary["containers"]["total"] == 3 and summary["containers"]["stale"] == 2
    assert summary["hosts"]["stale"] == 1


async def test_readyz_waits_for_first_attempts_and_healthz_is_alive(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    slow = await fake_engine(containers=1, latency=0.3)
    client = await make_client([host("slow", slow.url)], wait=False)
    assert (await client.get("/healthz")).status == 200
    first = await client.get("/readyz")
    assert first.status == 503 and (await first.json())["pending"] == ["slow"]
    await eventually(lambda: ready(client), timeout=3, interval=0.05)


async def test_disabled_host_is_listed_not_polled(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1)
    client = await make_client([host("off", eng.url, enabled=False)])
    body = await (await client.get("/api/v1/hosts")).json()
    assert body["hosts"][0]["state"] == "disabled"
    assert eng.paths() == []
    text = await (await client.get("/metrics")).text()
    assert 'fleetd_host_state{host="off",state="disabled"} 1.0' in text
    assert 'fleetd_host_up{host="off"}' not in text  # an alert on host_up == 0 must not fire for it


async def test_metrics_use_route_templates(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=2)
    client = await make_client([host("m1", eng.url)])
    await client.get("/api/v1/hosts/m1")
    await client.get("/api/v1/hosts/unknown-host")
    text = await (await client.get("/metrics")).text()
    assert 'fleetd_host_up{host="m1"} 1.0' in text
    assert 'fleetd_host_state{host="m1",state="up"} 1.0' in text
    assert 'fleetd_host_state{host="m1",state="down"} 0.0' in text
    assert 'route="/api/v1/hosts/{name}",status="404"' in text
    assert "unknown-host" not in text
    assert "fleetd_poll_duration_seconds_bucket" in text
