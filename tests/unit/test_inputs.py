"""Inputs that used to be accepted and do something else silently: each is now refused, or found."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fleetd.config.model import HostSettings
from fleetd.fleet.match import container_image_matches, name_matches
from tests.fakes import FakeEngines
from tests.unit.opskit import Tokens, host, settings, start_client
from tests.unit.snapshotkit import container

TOKENS = Tokens(ci="operator", root="admin")
OP, ADMIN = TOKENS.header("ci"), TOKENS.header("root")
Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


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


async def bad_request(resp: Any) -> str:
    assert resp.status == 400, await resp.text()
    message: str = (await resp.json())["error"]["message"]
    return message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"Image": "fleet/busybox:test", "name": "web3"}, "goes in the query (?name=web3)"),
        ({"Image": "fleet/busybox:test", "Comand": ["sleep", "1"]}, "unknown key 'Comand'"),
    ],
)
async def test_create_refuses_keys_the_engine_would_ignore(
    make_client: MakeClient, fake_engine: FakeEngines, body: dict[str, Any], says: str
) -> None:
    eng = await fake_engine(containers=0)
    client = await make_client(host("h1", eng.url))
    resp = await client.post("/api/v1/hosts/h1/containers", json=body, headers=OP)
    assert says in await bad_request(resp)
    assert eng.state.containers == {}  # nothing was created


@pytest.mark.parametrize("path", ["/api/v1/hosts/h1/containers", "/api/v1/actions"])
async def test_deeply_nested_json_bodies_are_a_400_not_a_500(
    make_client: MakeClient, fake_engine: FakeEngines, path: str
) -> None:
    eng = await fake_engine(containers=0)
    client = await make_client(host("h1", eng.url))
    deep = b"[" * 100_000 + b"]" * 100_000
    body = deep if path.endswith("containers") else b'{"action": "stop", "selector": ' + deep + b"}"
    resp = await client.post(path, data=body, headers={**OP, "Content-Type": "application/json"})
    assert await bad_request(resp)


async def test_audit_action_finds_entries_by_the_last_part_of_their_name(
    make_client: MakeClient, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=1)
    client = await make_client(host("h1", eng.url))
    [c] = (await (await client.get("/api/v1/containers", headers=OP)).json())["containers"]
    assert (await client.post(f"/api/v1/containers/h1/{c['id']}/start", headers=OP)).status == 200
    for given in ("start", "container.start"):
        entries = (await (await client.get(f"/api/v1/audit?action={given}", headers=ADMIN)).json())["entries"]
        assert [e["action"] for e in entries] == ["container.start"], given
    assert (await (await client.get("/api/v1/audit?action=tart", headers=ADMIN)).json())["entries"] == []


@pytest.mark.parametrize(
    ("image", "reference", "expected"),
    [
        ("fleet/busybox:test", "busybox", True),  # the namespace left out
        ("fleet/busybox:test", "busybox:test", True),
        ("registry:5000/team/app:2", "app", True),
        ("registry:5000/team/app:2", "team/app", True),
        ("registry:5000/team/app:2", "team/app:2", True),
        ("nginx:1.27", "nginx", True),
        ("mynginx:1.27", "nginx", False),  # only at a / boundary
        ("fleet/busybox:test", "box", False),
        ("registry:5000/app", "5000/app", False),  # ":" is not a boundary
    ],
)
def test_image_references_match_without_their_registry_or_namespace(
    image: str, reference: str, expected: bool
) -> None:
    assert name_matches(image, reference) is expected
    assert container_image_matches(container("h", "c", image=image), reference) is expected
