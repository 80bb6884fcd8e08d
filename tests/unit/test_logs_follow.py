"""Followed and merged container logs (NDJSON) against scripted Engines: order, late joiners, closing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from fleetd.api.keys import FLEET
from fleetd.api.logs import LOG_STREAMS
from fleetd.config.container_logs import ContainerLogSettings
from fleetd.config.model import HostSettings
from fleetd.fleet.queries import ContainerQuery
from fleetd.logs import stream as log_stream
from tests.harness import eventually
from tests.unit.logkit import LogEngine, stamp
from tests.unit.opskit import Tokens, host, settings, start_client

TOKENS = Tokens(ci="operator", watcher="viewer")
OP = TOKENS.header("ci")
VIEWER = TOKENS.header("watcher")

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(*hosts: HostSettings, logs: ContainerLogSettings | None = None) -> Client:
        cfg = settings(tmp_path, list(hosts), TOKENS.auth(), container_logs=logs or ContainerLogSettings())
        client = await start_client(cfg)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def read_lines(resp: aiohttp.ClientResponse, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            raw = await resp.content.readline()
            if not raw:
                break
            out.append(json.loads(raw))
    return out


async def test_a_followed_log_streams_new_lines_and_ends_when_the_container_stops(
    make_client: MakeClient,
) -> None:
    async with LogEngine() as eng:
        cid = eng.add("web")
        eng.write("web", "before", at=stamp(1))
        client = await make_client(host("h1", eng.url))
        resp = await client.get(
            "/api/v1/containers/h1/web/logs", params={"follow": "1", "tail": "all"}, headers=OP
        )
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        first = await read_lines(resp, 1)
        assert first == [
            {
                "host": "h1",
                "id": cid,
                "container": "web",
                "stream": "stdout",
                "time": stamp(1),
                "line": "before",
            }
        ]
        eng.write("web", "after the follow started", at=stamp(2, 5), stream=2)
        [second] = await read_lines(resp, 1)
        assert (second["line"], second["stream"], second["time"]) == (
            "after the follow started",
            "stderr",
            "2026-12-03T10:00:02.000000005Z",
        )
        eng.stop("web")
        assert await read_lines(resp, 1) == [{"reason": "container stopped", "end": True}]
        assert await resp.content.read() == b""
        assert any("follow=1" in p and "tail=all" in p for _, p in eng.requests)


async def test_the_client_leaving_closes_the_upstream_stream(make_client: MakeClient) -> None:
    async with LogEngine() as eng:
        eng.add("web")
        client = await make_client(host("h1", eng.url))
        resp = await client.get("/api/v1/containers/h1/web/logs", params={"follow": "1"}, headers=OP)
        assert resp.status == 200
        await eventually(lambda: eng.open_follows() == 1, timeout=15.0)
        assert len(client.app[LOG_STREAMS]) == 1
        resp.close()  # the client goes away without a word
        await eventually(lambda: eng.open_follows() == 0, timeout=15.0)
        await eventually(lambda: len(client.app[LOG_STREAMS]) == 0, timeout=15.0)


async def test_merged_logs_by_label_in_timestamp_order_across_hosts(make_client: MakeClient) -> None:
    async with LogEngine() as e1, LogEngine() as e2:
        e1.add("web1", {"app": "web"})
        e1.add("db1", {"app": "db"})
        e2.add("web2", {"app": "web"})
        e1.write("web1", "one", at=stamp(1))
        e1.write("db1", "not web", at=stamp(1, 5))
        e2.write("web2", "two", at=stamp(2))
        e1.write("web1", "three", at=stamp(3))
        e2.write("web2", "four", at=stamp(4), stream=2)
        client = await make_client(host("h1", e1.url), host("h2", e2.url))
        resp = await client.get("/api/v1/logs", params={"label": "app=web", "tail": "all"}, headers=OP)
        assert resp.status == 200
        lines = await read_lines(resp, 10)
        assert [(x.get("host"), x.get("container"), x.get("line")) for x in lines] == [
            ("h1", "web1", "one"),
            ("h2", "web2", "two"),
            ("h1", "web1", "three"),
            ("h2", "web2", "four"),
            (None, None, None),
        ]
        assert lines[3]["stream"] == "stderr" and lines[-1] == {"reason": "all lines sent", "end": True}


async def test_a_merged_follow_orders_within_the_window_and_picks_up_later_containers(
    make_client: MakeClient,
) -> None:
    async with LogEngine() as e1, LogEngine() as e2:
        e1.add("web1", {"app": "web"})
        e2.add("web2", {"app": "web"})
        e1.write("web1", "old", at=stamp(1))
        client = await make_client(host("h1", e1.url), host("h2", e2.url))
        resp = await client.get(
            "/api/v1/logs", params={"label": "app=web", "follow": "1", "tail": "0"}, headers=OP
        )
        assert resp.status == 200
        await eventually(lambda: e1.open_follows() == 1 and e2.open_follows() == 1, timeout=15.0)
        e2.write("web2", "later stamp, sent first", at=stamp(21))
        e1.write("web1", "earlier stamp, sent second", at=stamp(20))
        got = await read_lines(resp, 2)
        assert [x["line"] for x in got] == ["earlier stamp, sent second", "later stamp, sent first"]

        cid3 = e2.add("web3", {"app": "web"})
        e2.write("web3", "written before fleetd saw it", at=stamp(22))
        await client.app[FLEET].poller.refresh("h2")  # the state learns of web3; the stream follows it
        [joined] = await read_lines(resp, 1)
        assert (joined["host"], joined["id"], joined["container"]) == ("h2", cid3, "web3")
        assert joined["line"] == "written before fleetd saw it"

        e1.stop("web1")  # one stream ends; the merged stream goes on
        e2.write("web3", "still here", at=stamp(23))
        assert [x["line"] for x in await read_lines(resp, 1)] == ["still here"]
        assert e1.open_follows() == 0 and e2.open_follows() == 2
        resp.close()
        await eventually(lambda: e2.open_follows() == 0, timeout=15.0)


async def test_who_may_read_logs_is_configurable(make_client: MakeClient) -> None:
    async with LogEngine() as eng:
        eng.add("web", {"app": "web"})
        default = await make_client(host("h1", eng.url))
        for path, params in (
            ("/api/v1/containers/h1/web/logs", {}),
            ("/api/v1/containers/h1/web/logs", {"follow": "1"}),
            ("/api/v1/logs", {"label": "app=web"}),
        ):
            resp = await default.get(path, params=params, headers=VIEWER)
            assert resp.status == 403, path
            assert (await resp.json())["error"]["code"] == "insufficient_role"
        opened = await make_client(host("h1", eng.url), logs=ContainerLogSettings(role="viewer"))
        resp = await opened.get("/api/v1/containers/h1/web/logs", headers=VIEWER)
        assert resp.status == 200
        resp = await opened.get("/api/v1/logs", params={"label": "app=web"}, headers=VIEWER)
        assert resp.status == 200 and (await read_lines(resp, 1))[0]["end"] is True
        closed = await make_client(host("h1", eng.url), logs=ContainerLogSettings(role="admin"))
        resp = await closed.get("/api/v1/containers/h1/web/logs", headers=OP)
        assert resp.status == 403


async def test_limits_and_bad_requests_get_clear_errors(make_client: MakeClient) -> None:
    async with LogEngine() as eng:
        eng.add("web1", {"app": "web"})
        eng.add("web2", {"app": "web"})
        limits = ContainerLogSettings(max_streams=1, max_containers=1)
        client = await make_client(host("h1", eng.url), logs=limits)

        async def error(path: str, **params: str) -> tuple[int, str]:
            resp = await client.get(path, params=params, headers=OP)
            return resp.status, (await resp.json())["error"]["code"]

        assert await error("/api/v1/logs") == (400, "missing_selector")
        assert await error("/api/v1/logs", host="nowhere") == (404, "unknown_host")
        assert await error("/api/v1/logs", label="app=web") == (400, "too_many_containers")
        assert await error("/api/v1/containers/h1/web1/logs", tail="all") == (400, "bad_parameter")
        assert await error("/api/v1/containers/h1/gone/logs", follow="1") == (404, "engine_not_found")
        first = await client.get("/api/v1/containers/h1/web1/logs", params={"follow": "1"}, headers=OP)
        assert first.status == 200
        assert await error("/api/v1/containers/h1/web2/logs", follow="1") == (503, "too_many_streams")
        first.close()
        await eventually(lambda: len(client.app[LOG_STREAMS]) == 0, timeout=15.0)


async def test_shutdown_ends_open_streams_with_a_reason(make_client: MakeClient) -> None:
    async with LogEngine() as eng:
        eng.add("web")
        client = await make_client(host("h1", eng.url))
        resp = await client.get("/api/v1/containers/h1/web/logs", params={"follow": "1"}, headers=OP)
        await eventually(lambda: eng.open_follows() == 1, timeout=15.0)
        await client.app.shutdown()  # what aiohttp runs first when fleetd stops
        assert await read_lines(resp, 1) == [{"reason": "fleetd is shutting down", "end": True}]
        await eventually(lambda: eng.open_follows() == 0, timeout=15.0)


async def test_a_failing_container_in_a_merged_stream_is_reported_in_band(make_client: MakeClient) -> None:
    async with LogEngine() as eng:
        eng.add("web1", {"app": "web"})
        broken = eng.add("web2", {"app": "web"})
        eng.write("web1", "fine", at=stamp(1))

        async def fail(request: web.Request) -> web.StreamResponse:
            return web.json_response({"message": "log driver exploded"}, status=500)

        eng.on("GET", rf"/containers/{broken}/logs", fail)
        client = await make_client(host("h1", eng.url))
        resp = await client.get("/api/v1/logs", params={"label": "app=web", "tail": "all"}, headers=OP)
        lines = await read_lines(resp, 5)
        assert lines[0]["line"] == "fine"
        [error] = [x for x in lines if "error" in x]
        assert (error["host"], error["id"], error["container"]) == ("h1", broken, "web2")
        assert "log driver exploded" in error["error"]
        assert lines[-1] == {"reason": "all lines sent", "end": True}


async def test_a_long_plain_read_is_not_cut_by_the_request_timeout(make_client: MakeClient) -> None:
    async with LogEngine() as eng:
        eng.add("web1", {"app": "web"})
        for i in range(30):
            eng.write("web1", f"n{i}", at=stamp(1, i))
        eng.line_delay = 0.06  # 1.8 s in all, longer than the host's 1 s timeout
        client = await make_client(host("h1", eng.url, timeout=1.0))
        resp = await client.get("/api/v1/logs", params={"label": "app=web", "tail": "all"}, headers=OP)
        lines = await read_lines(resp, 40, timeout=10.0)
        assert [x.get("line") for x in lines[:-1]] == [f"n{i}" for i in range(30)]
        assert lines[-1] == {"reason": "all lines sent", "end": True}


async def test_a_merged_follow_looks_again_on_the_change_signal_not_on_a_timer(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_stream, "DISCOVERY_RETRY", 3600.0)  # no timer could find a late container
    async with LogEngine() as e1:
        e1.add("web1", {"app": "web"})
        client = await make_client(host("h1", e1.url, interval=0.2))
        state_type = type(client.app[FLEET].state)
        scans: list[ContainerQuery] = []
        real = state_type.containers

        def counting(self: Any, query: ContainerQuery, now: float | None = None) -> Any:
            scans.append(query)
            return real(self, query, now)

        monkeypatch.setattr(state_type, "containers", counting)
        resp = await client.get(
            "/api/v1/logs", params={"label": "app=web", "follow": "1", "tail": "0"}, headers=OP
        )
        assert resp.status == 200
        await eventually(lambda: e1.open_follows() == 1, timeout=15.0)
        at_start = len(scans)
        await asyncio.sleep(1.5)  # ~7 polls that change nothing: no look at the fleet
        assert len(scans) == at_start
        cid = e1.add("web2", {"app": "web"})  # the next poll sees it: a ContainerAdded
        e1.write("web2", "hello from a late container", at=stamp(30))
        [joined] = await read_lines(resp, 1, timeout=10.0)
        assert (joined["id"], joined["line"]) == (cid, "hello from a late container")
        assert len(scans) - at_start <= 2  # one look per relevant change batch
        resp.close()
