"""GET /api/v1/events: frames, filters, resume, reset, heartbeat, slow clients, the cap."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from fleetd.api.events import SSE
from fleetd.api.keys import FLEET
from fleetd.config.events import EventsSettings
from fleetd.config.model import HostSettings, PollSettings, Settings, SnapshotSettings
from fleetd.dockerapi import ContainerSummary
from fleetd.fleet.feed import FleetFeed
from fleetd.fleet.records import container_record
from fleetd.runtime import Fleet
from tests.fakes import FakeEngines
from tests.harness import FleetClient
from tests.ssekit import SseReader
from tests.unit.watchkit import eventually

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[TestClient[Any, Any]] = []

    async def make(**events: Any) -> TestClient[Any, Any]:
        settings = Settings(
            path=tmp_path / "fleetd.yaml",
            poll=PollSettings(interval=30.0, timeout=0.5),
            hosts=(
                HostSettings(name="d1", url="tcp://127.0.0.1:9", enabled=False),
                HostSettings(name="d2", url="tcp://127.0.0.1:9", enabled=False),
            ),
            snapshots=SnapshotSettings(enabled=False, path=tmp_path / "fleetd.db"),
            events=EventsSettings(**events),
        )
        client: TestClient[Any, Any] = FleetClient(Fleet(settings))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


def feed(client: TestClient[Any, Any]) -> FleetFeed:
    return client.server.app[FLEET].feed


def changed(f: FleetFeed, host: str = "d1", name: str = "web", labels: dict[str, str] | None = None) -> str:
    summary = ContainerSummary(
        Id=f"{name}-id", Names=(f"/{name}",), State="exited", Labels=labels or {"app": "web"}
    )
    c = container_record(host, summary, None)
    return f.publish(
        "container.changed", host, container=c, fields=("state",), action="die", exit_code=137
    ).id


async def test_frames_carry_the_container_and_filters_apply(make_client: MakeClient) -> None:
    client = await make_client()
    async with client.get("/api/v1/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        reader = SseReader(resp)
        first = await reader.next(skip_comments=False)
        assert first.retry is not None and 2000 <= first.retry <= 5000
        eid = changed(feed(client))
        f = await reader.next()
        assert (f.id, f.event) == (eid, "container.changed")
        assert f.data["container"]["name"] == "web" and f.data["container"]["state"] == "exited"
        assert (f.data["action"], f.data["exit_code"], f.data["fields"]) == ("die", 137, ["state"])
        assert f.data["host"] == "d1" and f.data["time"].endswith("Z")
    async with client.get("/api/v1/events?host=d2&type=container&label=app=db") as resp:
        reader = SseReader(resp)
        changed(feed(client), host="d1", labels={"app": "db"})  # other host
        changed(feed(client), host="d2", labels={"app": "web"})  # other label
        feed(client).publish("host.changed", "d2", before="up", after="down", record={"name": "d2"})  # type
        wanted = changed(feed(client), host="d2", labels={"app": "db"})
        assert (await reader.next()).id == wanted
    for bad in ("type=nope", "host=zz", "label==x", "bogus=1"):
        async with client.get(f"/api/v1/events?{bad}") as resp:
            assert resp.status in (400, 404), bad
            assert "error" in await resp.json()


async def test_resume_delivers_exactly_the_missed_frames_header_wins(make_client: MakeClient) -> None:
    client = await make_client()
    f = feed(client)
    ids = [changed(f, name=f"c{i}") for i in range(3)]
    missed = [changed(f, name=f"m{i}") for i in range(5)]
    headers = {"Last-Event-ID": ids[-1]}
    async with client.get(f"/api/v1/events?last_event_id={ids[0]}", headers=headers) as resp:
        reader = SseReader(resp)
        got = await reader.frames(5)
        assert [g.id for g in got] == missed
        live = changed(f, name="live")
        assert (await reader.next()).id == live
        await reader.none_within(0.2)  # no duplicates
    async with client.get(f"/api/v1/events?last_event_id={live}") as resp:  # the query alone works too
        reader = SseReader(resp)
        live2 = changed(f, name="live2")
        assert (await reader.next()).id == live2


@pytest.mark.parametrize(
    "last_id, reason", [("garbage", "malformed"), ("deadbeef.3", "epoch"), ("EPOCH.99", "future")]
)
async def test_unusable_id_gets_an_in_band_reset_then_live(
    make_client: MakeClient, last_id: str, reason: str
) -> None:
    client = await make_client()
    f = feed(client)
    changed(f)
    async with client.get(
        "/api/v1/events", headers={"Last-Event-ID": last_id.replace("EPOCH", f.epoch)}
    ) as resp:
        assert resp.status == 200
        reader = SseReader(resp)
        reset = await reader.next()
        assert reset.event == "reset" and reset.data["reason"] == reason and reset.id == f.head_id
        live = changed(f)
        assert (await reader.next()).id == live


async def test_overflowed_ring_gives_reset_expired(make_client: MakeClient) -> None:
    client = await make_client(buffer=50)
    f = feed(client)
    first = changed(f)
    for i in range(120):
        changed(f, name=f"x{i}")
    async with client.get("/api/v1/events", headers={"Last-Event-ID": first}) as resp:
        reset = await SseReader(resp).next()
        assert reset.event == "reset" and reset.data["reason"] == "expired"


async def test_list_answers_carry_the_event_id_and_heartbeat(make_client: MakeClient) -> None:
    client = await make_client(heartbeat=0.2)
    f = feed(client)
    changed(f)
    head = f.head_id
    for path in ("/api/v1/containers", "/api/v1/hosts"):
        async with client.get(path) as resp:
            assert resp.status == 200 and resp.headers["X-Fleet-Event-Id"] == head
    async with client.get("/api/v1/summary") as resp:
        assert "X-Fleet-Event-Id" not in resp.headers
    async with client.get("/api/v1/events", headers={"Last-Event-ID": head}) as resp:
        reader = SseReader(resp)
        await reader.none_within(0.5)
        assert reader.comments.count("ping") >= 2


async def test_subscriber_cap_answers_a_json_503(make_client: MakeClient) -> None:
    client = await make_client(max_subscribers=2)
    a = await client.get("/api/v1/events")
    b = await client.get("/api/v1/events")
    try:
        async with client.get("/api/v1/events") as resp:
            assert resp.status == 503
            body = await resp.json()
            assert body["error"]["code"] == "too_many_subscribers" and body["error"]["limit"] == 2
            assert "Retry-After" in resp.headers
        async with client.get("/metrics") as resp:
            text = await resp.text()
        assert "fleetd_sse_subscribers 2.0" in text and "fleetd_sse_refused_total 1.0" in text
    finally:
        a.close()
        b.close()


async def test_a_client_that_never_reads_is_closed_and_others_get_every_frame(
    make_client: MakeClient,
) -> None:
    client = await make_client(write_timeout=1.0, queue=100_000)
    f = feed(client)
    hub = client.server.app[SSE]
    port = client.server.port
    assert port is not None
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", port))
    stuck.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        async with client.get("/api/v1/events") as resp:
            reader = SseReader(resp)
            await eventually(lambda: len(hub.streams) == 2)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            big = {f"k{i}": "v" * 100 for i in range(20)}  # ~2.5 KB per frame
            ids = [changed(f, name=f"c{i}", labels=big) for i in range(3000)]
            got: list[str] = []
            while len(got) < len(ids):
                got.append((await reader.next(10)).id or "")
            assert got == ids  # every frame, in order
            while len(hub.streams) > 1:
                assert loop.time() - t0 < 5.0, "the stuck client was not closed"
                await asyncio.sleep(0.05)
            assert hub.closed_slow == 1
    finally:
        stuck.close()


async def test_the_feed_is_quiet_until_an_id_is_handed_out_then_a_resume_misses_nothing(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    """No fleet event is made while nobody could read or resume one (a start-up announces every
    container of every host); the first id handed out makes the feed loud, and a client resuming
    from it gets every change after it."""
    eng = await fake_engine(containers=4, seed=5)
    settings = Settings(
        path=tmp_path / "fleetd.yaml",
        poll=PollSettings(interval=30.0, timeout=1.0),
        hosts=(HostSettings(name="a", url=eng.url, interval=30.0, timeout=1.0),),
        snapshots=SnapshotSettings(enabled=False, path=tmp_path / "fleetd.db"),
        events=EventsSettings(enabled=False),
    )
    client: TestClient[Any, Any] = FleetClient(Fleet(settings))
    await client.start_server()
    try:
        fleet = client.server.app[FLEET]
        assert await fleet.state.wait_ready(10.0)
        await asyncio.sleep(0.1)  # the pump has seen the first poll's 4 ContainerAdded
        assert fleet.feed.quiet and fleet.feed.after(f"{fleet.feed.epoch}.0") == []
        async with client.get("/api/v1/containers") as resp:
            head = resp.headers["X-Fleet-Event-Id"]
            listed = {c["id"] for c in (await resp.json())["containers"]}
        assert head == f"{fleet.feed.epoch}.0" and len(listed) == 4 and not fleet.feed.quiet
        gone = next(iter(eng.state.containers))
        del eng.state.containers[gone]
        await fleet.poller.refresh("a")
        async with client.get("/api/v1/events", headers={"Last-Event-ID": head}) as resp:
            frame = await SseReader(resp).next()
            assert (frame.event, frame.data["container"]["id"]) == ("container.removed", gone)
    finally:
        await client.close()
