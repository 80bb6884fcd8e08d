"""The fake Engine answers like dockerd, and every fault mode really happens on the wire."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes import (
    STATE_CYCLE,
    EngineBehaviour,
    FakeEngine,
    FakeEngines,
    FakeFleet,
    Fault,
    docker_20_10,
    docker_29,
    podman,
)

STATUS = re.compile(
    r"^(Up (Less than a second|\d+ \w+|About an? \w+)( \((healthy|unhealthy|health: starting|Paused)\))?"
    r"|Exited \(\d+\) .+ ago|Created|Restarting \(\d+\) .+ ago|Dead)$"
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


# -- identity and negotiation ---------------------------------------------------------------------


async def test_ping_answers_ok_with_docker_headers(
    fake_engine: FakeEngines, http: aiohttp.ClientSession
) -> None:
    eng = await fake_engine(docker_20_10())
    async with http.get(f"{eng.http_url}/_ping") as resp:
        assert resp.status == 200
        assert await resp.text() == "OK"
        assert resp.headers["Api-Version"] == "1.41"
        assert resp.headers["Docker-Experimental"] == "false"
        assert resp.headers["Server"] == "Docker/20.10.24+dfsg1 (linux)"
    async with http.head(f"{eng.http_url}/_ping") as resp:
        assert resp.status == 200
        assert resp.headers["Api-Version"] == "1.41"
        assert await resp.read() == b""
    assert eng.requests == [("GET", "/_ping"), ("HEAD", "/_ping")]
    assert eng.url == f"tcp://127.0.0.1:{eng.port}"


async def test_api_version_header_can_be_missing_or_differ(
    fake_engine: FakeEngines, http: aiohttp.ClientSession
) -> None:
    eng = await fake_engine(ping_api_version_header=None)
    async with http.get(f"{eng.http_url}/_ping") as resp:
        assert "Api-Version" not in resp.headers
    eng.behaviour.ping_api_version_header = "1.30"
    async with http.get(f"{eng.http_url}/_ping") as resp:
        assert resp.headers["Api-Version"] == "1.30"


async def test_version_reports_api_range(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(docker_29())
    status, body = await get_json(http, f"{eng.http_url}/version")
    assert status == 200
    assert (body["ApiVersion"], body["MinAPIVersion"], body["Version"]) == ("1.52", "1.44", "29.0.2")


async def test_podman_preset_looks_like_libpod(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(podman())
    async with http.get(f"{eng.http_url}/_ping") as resp:
        assert resp.headers["Server"] == "Libpod/4.3.1 (linux)"
        assert resp.headers["Api-Version"] == "1.41"
        assert resp.headers["Libpod-Api-Version"] == "4.3.1"
    _, body = await get_json(http, f"{eng.http_url}/version")
    assert body["Components"][0]["Name"] == "Podman Engine"


async def test_versioned_paths_work_and_are_recorded(
    fake_engine: FakeEngines, http: aiohttp.ClientSession
) -> None:
    eng = await fake_engine(docker_20_10())
    status, body = await get_json(http, f"{eng.http_url}/v1.41/containers/json?all=1")
    assert status == 200 and isinstance(body, list) and len(body) == 40
    status, _ = await get_json(http, f"{eng.http_url}/v1.24/info")
    assert status == 200
    assert eng.paths() == ["/v1.41/containers/json?all=1", "/v1.24/info"]


async def test_docker_29_refuses_old_clients(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(docker_29())
    status, body = await get_json(http, f"{eng.http_url}/v1.41/info")
    assert status == 400
    assert body == {
        "message": "client version 1.41 is too old. Minimum supported API version is 1.44, "
        "please upgrade your client to a newer version"
    }
    status, body = await get_json(http, f"{eng.http_url}/v1.53/info")
    assert status == 400
    assert body["message"] == "client version 1.53 is too new. Maximum supported API version is 1.52"
    assert (await get_json(http, f"{eng.http_url}/v1.44/info"))[0] == 200


async def test_unknown_path_is_docker_404(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine()
    assert await get_json(http, f"{eng.http_url}/v1.41/nope") == (404, {"message": "page not found"})


# -- inventory ------------------------------------------------------------------------------------


async def test_info_identity_and_counts(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(engine_id="ABCD:EFGH", hostname="node-7")
    _, info = await get_json(http, f"{eng.http_url}/info")
    assert (info["ID"], info["Name"]) == ("ABCD:EFGH", "node-7")
    _, every = await get_json(http, f"{eng.http_url}/containers/json?all=1")
    running = sum(c["State"] == "running" for c in every)
    assert (info["Containers"], info["ContainersRunning"]) == (len(every), running)
    assert info["ContainersStopped"] == len(every) - running


async def test_default_engine_ids_differ_and_follow_the_product(fake_engine: FakeEngines) -> None:
    a, b = await fake_engine(), await fake_engine()
    assert a.state.engine_id != b.state.engine_id
    old = await fake_engine(docker_20_10())
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", old.state.engine_id)
    assert re.fullmatch(r"[0-9a-f-]{36}", a.state.engine_id)


async def test_containers_are_realistic(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(containers=40)
    _, every = await get_json(http, f"{eng.http_url}/containers/json?all=1")
    assert len(every) == 40
    for c in every:
        assert re.fullmatch(r"[0-9a-f]{64}", c["Id"])
        assert len(c["Names"]) == 1 and c["Names"][0].startswith("/")
        assert c["ImageID"].startswith("sha256:") and isinstance(c["Created"], int)
        assert c["State"] in {"running", "exited", "created"}
        assert STATUS.match(c["Status"]), c["Status"]
        assert "SizeRw" not in c and "SizeRootFs" not in c
        assert {"NetworkMode"} <= c["HostConfig"].keys()
        assert isinstance(c["Labels"], dict) and isinstance(c["Ports"], list)
        assert isinstance(c["Mounts"], list) and "Networks" in c["NetworkSettings"]
    statuses = " ".join(c["Status"] for c in every)
    for health in ("(healthy)", "(unhealthy)", "(health: starting)", "Exited (0)", "Exited (137)"):
        assert health in statuses
    expected_running = sum(STATE_CYCLE[i % len(STATE_CYCLE)][0] == "running" for i in range(40))
    _, running = await get_json(http, f"{eng.http_url}/containers/json")
    assert len(running) == expected_running < 40
    assert {c["State"] for c in running} == {"running"}


async def test_containers_are_deterministic_per_seed(fake_engine: FakeEngines) -> None:
    a = await fake_engine(seed=7)
    b = await fake_engine(seed=7)
    c = await fake_engine(seed=8)
    assert list(a.state.containers) == list(b.state.containers)
    assert set(a.state.containers).isdisjoint(c.state.containers)


async def test_size_only_when_asked(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(containers=3)
    _, body = await get_json(http, f"{eng.http_url}/containers/json?all=1&size=true")
    assert all("SizeRw" in c for c in body)
    assert eng.paths() == ["/containers/json?all=1&size=true"]


async def test_label_filter(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine()
    filters = json.dumps({"label": ["app=db"]})
    async with http.get(f"{eng.http_url}/containers/json", params={"all": "1", "filters": filters}) as resp:
        body = await resp.json()
    expected = [c for c in eng.state.containers.values() if c.labels.get("app") == "db"]
    assert len(body) == len(expected) > 0
    assert all(c["Labels"]["app"] == "db" for c in body)


async def test_inspect_by_id_prefix_and_name(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(containers=5)
    first = next(iter(eng.state.containers.values()))
    for ref in (first.id, first.id[:12], first.name):
        status, body = await get_json(http, f"{eng.http_url}/v1.41/containers/{ref}/json")
        assert status == 200 and body["Id"] == first.id and body["Name"] == f"/{first.name}"
    assert await get_json(http, f"{eng.http_url}/containers/nope/json") == (
        404,
        {"message": "No such container: nope"},
    )


async def test_images_follow_the_api_version(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(docker_29())
    _, new = await get_json(http, f"{eng.http_url}/v1.47/images/json")
    eng.behaviour.min_api_version = "1.24"
    _, old = await get_json(http, f"{eng.http_url}/v1.41/images/json")
    assert new and all(i["Id"].startswith("sha256:") and "VirtualSize" not in i for i in new)
    assert all("VirtualSize" in i for i in old)


# -- actions --------------------------------------------------------------------------------------


async def test_container_lifecycle(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(containers=0)
    base = f"{eng.http_url}/v1.47"
    spec = {"Image": "fleet/busybox:test", "Cmd": ["sleep", "1000"], "HostConfig": {"NetworkMode": "none"}}
    async with http.post(f"{base}/containers/create?name=web1", json=spec) as resp:
        assert resp.status == 201
        cid = (await resp.json())["Id"]
    async with http.post(f"{base}/containers/create?name=web1", json=spec) as resp:
        assert resp.status == 409 and "already in use" in (await resp.json())["message"]
    async with http.post(f"{base}/containers/create", json={"Image": "nope:1"}) as resp:
        assert resp.status == 404 and (await resp.json())["message"] == "No such image: nope:1"

    expected = [
        ("POST", "start", 204),
        ("POST", "start", 304),
        ("DELETE", "", 409),
        ("POST", "stop", 204),
        ("POST", "stop", 304),
        ("POST", "kill", 409),
        ("POST", "restart", 204),
        ("POST", "kill", 204),
        ("DELETE", "", 204),
        ("POST", "start", 404),
    ]
    for method, action, status in expected:
        url = f"{base}/containers/{cid}" + (f"/{action}" if action else "")
        async with http.request(method, url) as resp:
            assert (method, action, resp.status) == (method, action, status)
    assert eng.state.containers == {}


async def test_forced_remove_of_running_container(
    fake_engine: FakeEngines, http: aiohttp.ClientSession
) -> None:
    eng = await fake_engine(containers=1)
    (cid,) = eng.state.containers
    eng.state.containers[cid].state = "running"
    async with http.delete(f"{eng.http_url}/containers/{cid}?force=1") as resp:
        assert resp.status == 204


async def test_started_container_shows_fresh_status(
    fake_engine: FakeEngines, http: aiohttp.ClientSession
) -> None:
    eng = await fake_engine(containers=0)
    async with http.post(f"{eng.http_url}/containers/create?name=j1", json={"Image": "redis:7.4"}) as resp:
        cid = (await resp.json())["Id"]
    async with http.post(f"{eng.http_url}/containers/{cid}/start"):
        pass
    _, body = await get_json(http, f"{eng.http_url}/containers/json")
    assert [(c["Names"], c["Status"]) for c in body] == [(["/j1"], "Up Less than a second")]


async def test_search_and_pull_stream(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(unpullable={"private/secret"})
    status, hits = await get_json(http, f"{eng.http_url}/images/search?term=nginx&limit=2")
    assert status == 200 and [h["name"] for h in hits] == ["nginx", "bitnami/nginx"]
    async with http.post(f"{eng.http_url}/images/create?fromImage=alpine&tag=3.20") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        lines = [json.loads(line) async for line in resp.content if line.strip()]
    assert lines[0]["status"] == "Pulling from library/alpine"
    assert lines[-1] == {"status": "Status: Downloaded newer image for alpine:3.20"}
    assert any(line.get("progressDetail", {}).get("total") for line in lines)
    assert "alpine:3.20" in eng.state.images
    async with http.post(f"{eng.http_url}/images/create?fromImage=private/secret&tag=latest") as resp:
        assert resp.status == 404 and "pull access denied" in (await resp.json())["message"]


# -- faults ---------------------------------------------------------------------------------------


async def test_hang_times_the_client_out(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine()
    eng.behaviour.faults["containers"] = Fault.HANG
    with pytest.raises(TimeoutError):
        async with http.get(f"{eng.http_url}/containers/json", timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    assert (await get_json(http, f"{eng.http_url}/info"))[0] == 200  # only that endpoint hangs


async def test_hang_does_not_block_shutdown() -> None:
    eng = await FakeEngine(EngineBehaviour(faults={"*": Fault.HANG})).start()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        pending = asyncio.ensure_future(http.get(f"{eng.http_url}/_ping"))
        for _ in range(500):  # until the request reached the hung handler
            if eng.requests:
                break
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await eng.aclose()
        assert time.monotonic() - started < 1.0
        with pytest.raises(aiohttp.ClientConnectionError):
            await pending
    await eng.aclose()  # idempotent


async def test_status_500(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(faults={"info": Fault.STATUS_500})
    status, body = await get_json(http, f"{eng.http_url}/v1.41/info")
    assert status == 500 and "injected failure" in body["message"]


async def test_invalid_json(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(faults={"containers": Fault.INVALID_JSON})
    async with http.get(f"{eng.http_url}/containers/json") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        with pytest.raises(json.JSONDecodeError):
            json.loads(await resp.text())


async def test_wrong_shape(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(faults={"containers": Fault.WRONG_SHAPE, "info": Fault.WRONG_SHAPE})
    assert isinstance((await get_json(http, f"{eng.http_url}/containers/json"))[1], dict)
    assert isinstance((await get_json(http, f"{eng.http_url}/info"))[1], list)


async def test_close_connection(fake_engine: FakeEngines) -> None:
    eng = await fake_engine(faults={"*": Fault.CLOSE_CONNECTION})
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with http.get(f"{eng.http_url}/_ping"):
                pass


async def test_slow_and_latency(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine(faults={"info": Fault.SLOW}, slow_seconds=0.4, latency=0.1)
    started = time.monotonic()
    assert (await get_json(http, f"{eng.http_url}/info"))[0] == 200
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    async with http.get(f"{eng.http_url}/_ping") as resp:
        assert resp.status == 200
    assert 0.1 <= time.monotonic() - started < 0.4


async def test_faults_change_at_runtime(fake_engine: FakeEngines, http: aiohttp.ClientSession) -> None:
    eng = await fake_engine()
    eng.behaviour.faults["*"] = Fault.STATUS_500
    assert (await get_json(http, f"{eng.http_url}/version"))[0] == 500
    eng.behaviour.faults.clear()
    assert (await get_json(http, f"{eng.http_url}/version"))[0] == 200


# -- serving --------------------------------------------------------------------------------------


async def test_unix_socket_engine(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    async with FakeEngine(docker_20_10(), unix_path=path) as eng:
        assert eng.url == f"unix://{path}"
        connector = aiohttp.UnixConnector(path=str(path))
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get("http://d/v1.41/_ping") as resp,
        ):
            assert (resp.status, await resp.text()) == (200, "OK")
        with pytest.raises(RuntimeError):
            _ = eng.port
    assert not path.exists()


async def test_refuses_non_loopback_address() -> None:
    with pytest.raises(ValueError, match="loopback"):
        await FakeEngine(host="0.0.0.0").start()


async def test_fleet_serves_each_engine_on_its_port(http: aiohttp.ClientSession) -> None:
    def behaviour(i: int) -> EngineBehaviour:
        return EngineBehaviour(seed=i, engine_id=f"engine-{i}", faults={"info": Fault.HANG} if i == 2 else {})

    async with FakeFleet(5, behaviour) as fleet:
        assert len(set(fleet.ports)) == 5
        for i, engine in enumerate(fleet.engines):
            if i == 2:
                continue
            status, info = await get_json(http, f"{engine.http_url}/v1.41/info")
            assert (status, info["ID"]) == (200, f"engine-{i}")
            assert engine.requests == [("GET", "/v1.41/info")]
        with pytest.raises(TimeoutError):
            async with http.get(
                f"{fleet.engines[2].http_url}/info", timeout=aiohttp.ClientTimeout(total=0.2)
            ):
                pass
        assert fleet.engines[2].paths() == ["/info"]
