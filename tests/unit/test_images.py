"""Images: the fleet-wide list from the aggregate, search, pull (success and refusals), streamed load."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from fleetd.config.model import HostSettings
from tests.fakes import FakeEngines
from tests.fakes.behaviour import Fault
from tests.unit.opskit import ScriptedEngine, Tokens, host, settings, start_client

TOKENS = Tokens(ci="operator", watcher="viewer")
OP = TOKENS.header("ci")
VIEW = TOKENS.header("watcher")

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]

NO_REGISTRY = (
    'Get "https://index.docker.io/v1/search?q=nginx&n=25": dial tcp: lookup index.docker.io '
    "on 127.0.0.53:53: server misbehaving"
)


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


async def test_fleet_images_once_by_id_with_their_hosts(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    a = await fake_engine(containers=2, seed=1)
    b = await fake_engine(containers=2, seed=2)
    b.state.add_image("only-on-b:1")
    client = await make_client(host("a", a.url), host("b", b.url), host("off", a.url, enabled=False))
    data = await (await client.get("/api/v1/images", headers=VIEW)).json()
    by_tag = {t: img for img in data["images"] for t in img["tags"]}
    assert len(data["images"]) == data["total"] == 7 and data["unlisted_hosts"] == []
    assert by_tag["nginx:1.27"]["hosts"] == ["a", "b"]
    assert by_tag["nginx:1.27"]["id"] == a.state.images["nginx:1.27"].id
    assert by_tag["only-on-b:1"]["hosts"] == ["b"]
    assert {"size", "created", "digests"} <= set(by_tag["redis:7.4"])

    data = await (await client.get("/api/v1/images", params={"host": "a"}, headers=VIEW)).json()
    assert data["total"] == 6 and all(img["hosts"] == ["a"] for img in data["images"])
    for ref in ("nginx", "nginx:1.27", a.state.images["nginx:1.27"].id[:19]):
        data = await (await client.get("/api/v1/images", params={"reference": ref}, headers=VIEW)).json()
        assert [img["tags"] for img in data["images"]] == [["nginx:1.27"]], ref
    data = await (await client.get("/api/v1/images", params={"reference": "ngin"}, headers=VIEW)).json()
    assert data["total"] == 0  # a reference is not a substring
    assert (await client.get("/api/v1/images", params={"host": "zz"}, headers=VIEW)).status == 404

    data = await (await client.get("/api/v1/hosts/b/images", headers=VIEW)).json()
    assert data["host"] == "b" and data["total"] == 7 and data["listed_at"] is not None
    data = await (await client.get("/api/v1/hosts/off/images", headers=VIEW)).json()
    assert data["images"] is None  # never listed: unknown, not empty
    assert (await client.get("/api/v1/hosts/zz/images", headers=VIEW)).status == 404


async def test_pull_then_the_image_is_in_the_aggregate(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=1)
    client = await make_client(host("h1", eng.url))  # images_every=1000: only the pull's refresh lists them
    resp = await client.post("/api/v1/hosts/h1/images/pull", params={"image": "alpine:3.20"}, headers=OP)
    data = await resp.json()
    assert resp.status == 200, data
    assert data["status"] == "Status: Downloaded newer image for alpine:3.20"
    assert data["digest"].startswith("sha256:") and data["refreshed"] is True
    assert any("fromImage=alpine" in p and "tag=3.20" in p for p in eng.paths())
    data = await (
        await client.get("/api/v1/images", params={"reference": "alpine:3.20"}, headers=VIEW)
    ).json()
    assert [img["hosts"] for img in data["images"]] == [["h1"]]


async def test_pull_refusals_are_clear(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1, unpullable={"private/app:1"})
    client = await make_client(host("h1", eng.url))
    resp = await client.post("/api/v1/hosts/h1/images/pull", params={"image": "private/app:1"}, headers=OP)
    err = (await resp.json())["error"]
    assert resp.status == 404 and err["code"] == "image_not_found" and "pull access denied" in err["message"]
    eng.behaviour.faults["pull"] = Fault.STATUS_500
    resp = await client.post("/api/v1/hosts/h1/images/pull", params={"image": "redis:8"}, headers=OP)
    err = (await resp.json())["error"]
    assert resp.status == 502 and err["code"] == "registry_error" and err["host"] == "h1"
    resp = await client.post("/api/v1/hosts/h1/images/pull", headers=OP)
    assert resp.status == 400


async def test_pull_failing_inside_the_stream_without_registry(make_client: MakeClient) -> None:
    async def pull(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"status":"Pulling from library/busybox","id":"latest"}\r\n')
        await response.write(
            json.dumps({"errorDetail": {"message": NO_REGISTRY}, "error": NO_REGISTRY}).encode()
        )
        await response.write_eof()
        return response

    async with ScriptedEngine() as eng:
        eng.on("POST", "/images/create", pull)
        client = await make_client(host("h1", eng.url))
        resp = await client.post("/api/v1/hosts/h1/images/pull", params={"image": "busybox"}, headers=OP)
        err = (await resp.json())["error"]
        assert resp.status == 502 and err["code"] == "registry_unreachable"
        assert "host h1 has no registry access" in err["message"] and "index.docker.io" in err["message"]


async def test_search(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    down = await fake_engine(containers=1)
    up = await fake_engine(containers=1)
    down.behaviour.faults["*"] = Fault.STATUS_500
    client = await make_client(host("broken", down.url), host("good", up.url))
    resp = await client.get("/api/v1/images/search", params={"term": "nginx", "limit": "3"}, headers=VIEW)
    data = await resp.json()
    assert resp.status == 200 and data["host"] == "good"  # the first host that is up
    assert 1 <= data["total"] <= 3 and all("nginx" in r["name"] for r in data["results"])
    assert any("/images/search?term=nginx&limit=3" in p for p in up.paths())
    resp = await client.get("/api/v1/images/search", params={"term": "nginx", "host": "broken"}, headers=VIEW)
    assert resp.status == 502
    assert (await client.get("/api/v1/images/search", headers=VIEW)).status == 400
    resp = await client.get("/api/v1/images/search", params={"term": "x", "host": "zz"}, headers=VIEW)
    assert resp.status == 404


async def test_search_without_registry_access_says_so_and_has_a_longer_timeout(
    make_client: MakeClient,
) -> None:
    async def search(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.6)  # twice the host's poll timeout
        if request.query["term"] == "nginx":
            return web.json_response({"message": NO_REGISTRY}, status=500)
        return web.json_response([{"name": "ok", "description": "", "star_count": 1}])

    async with ScriptedEngine() as eng:
        eng.on("GET", "/images/search", search)
        client = await make_client(host("h1", eng.url, timeout=0.3))
        resp = await client.get("/api/v1/images/search", params={"term": "nginx"}, headers=VIEW)
        err = (await resp.json())["error"]
        assert resp.status == 502 and err["code"] == "registry_unreachable"
        assert err["message"].startswith("host h1 has no registry access")
        resp = await client.get("/api/v1/images/search", params={"term": "other"}, headers=VIEW)
        assert resp.status == 200 and (await resp.json())["results"][0]["name"] == "ok"


async def test_search_with_no_host_up(make_client: MakeClient, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1)
    eng.behaviour.faults["*"] = Fault.STATUS_500
    client = await make_client(host("h1", eng.url))
    resp = await client.get("/api/v1/images/search", params={"term": "x"}, headers=VIEW)
    assert resp.status == 503 and (await resp.json())["error"]["code"] == "no_host_up"


async def test_load_streams_the_body_through(make_client: MakeClient) -> None:
    size = 8 * 1024 * 1024
    first_bytes_arrived = asyncio.Event()
    received = hashlib.sha256()
    counted = [0]

    async def load(request: web.Request) -> web.StreamResponse:
        async for chunk in request.content.iter_any():
            received.update(chunk)
            counted[0] += len(chunk)
            first_bytes_arrived.set()
        return web.Response(
            body=b'{"stream":"Loaded image: fleet/busybox:test\\n"}\r\n', content_type="application/json"
        )

    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        chunk = bytes(range(256)) * 256  # 64 KiB
        for i in range(size // len(chunk)):
            sent.update(chunk)
            yield chunk
            if i == 0:
                # fleetd must pass the first chunk on before it has the rest: a buffering proxy stalls here
                await asyncio.wait_for(first_bytes_arrived.wait(), 5.0)

    async with ScriptedEngine() as eng:
        eng.on("POST", "/images/load", load)
        client = await make_client(host("h1", eng.url))
        resp = await client.post("/api/v1/hosts/h1/images/load", data=body(), headers=OP)
        data = await resp.json()
        assert resp.status == 200, data
        assert data == {"host": "h1", "loaded": ["fleet/busybox:test"], "bytes": size, "refreshed": True}
        assert counted[0] == size and received.hexdigest() == sent.hexdigest()
        assert any(p.startswith("/v1.41/images/load?quiet=1") for _, p in eng.requests)
        resp = await client.post("/api/v1/hosts/h1/images/load", headers=OP)
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "empty_body"


async def test_load_refused_by_the_daemon(make_client: MakeClient) -> None:
    async def load(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=b'{"error":"unexpected EOF"}\n', content_type="application/json")

    async with ScriptedEngine() as eng:
        eng.on("POST", "/images/load", load)
        client = await make_client(host("h1", eng.url))
        resp = await client.post("/api/v1/hosts/h1/images/load", data=b"not a tarball", headers=OP)
        err = (await resp.json())["error"]
        assert resp.status == 400 and "unexpected EOF" in err["message"] and err["host"] == "h1"
