"""LogStream's bounds and the pieces under it: buffers, line splitting, Docker's timestamps."""

from __future__ import annotations

import asyncio
import struct
from typing import Any
from unittest import mock

import aiohttp

from fleetd.dockerapi import DockerClient
from fleetd.dockerapi.stream import demux_log_stream
from fleetd.logs import LogEntry, LogStream, StreamOptions, Target, parse_timestamp
from fleetd.logs.entries import since_param, split_timestamp
from tests.unit.logkit import LogEngine, stamp


def test_docker_timestamps_parse_to_nanoseconds() -> None:
    base = parse_timestamp("2026-12-03T10:00:00Z")
    assert base is not None and base % 1_000_000_000 == 0
    assert parse_timestamp("2026-12-03T10:00:00.5Z") == base + 500_000_000
    assert parse_timestamp("2026-12-03T10:00:00.000000001Z") == base + 1
    assert parse_timestamp("2026-12-03T11:00:00+01:00") == base
    assert parse_timestamp("yesterday") is None and parse_timestamp("2026-13-40T99:00:00Z") is None
    assert split_timestamp(f"{stamp(1)} hello world") == (
        stamp(1),
        (base or 0) + 1_000_000_000,
        "hello world",
    )
    assert split_timestamp("no stamp here") == (None, None, "no stamp here")
    assert since_param(1_764_756_000_000_000_005) == "1764756000.000000005"


async def test_an_endless_line_is_split_so_memory_stays_bounded() -> None:
    reader = aiohttp.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload = b"x" * 10_000 + b"\nshort\n"
    reader.feed_data(struct.pack(">BxxxL", 1, len(payload)) + payload)
    reader.feed_eof()
    lines = [item async for item in demux_log_stream(reader, tty=False, max_line=4096)]
    assert [len(x.line) for x in lines] == [4096, 4096, 1808, 5]


async def test_a_client_that_does_not_read_leaves_bounded_buffers_and_loses_nothing() -> None:
    async with LogEngine() as eng:
        cid = eng.add("web")
        for i in range(300):
            eng.write("web", f"line {i}", at=stamp(i % 60, i))
        async with DockerClient(eng.url) as client:
            options = StreamOptions(follow=False, buffer_lines=10)
            stream = LogStream(lambda _h: client, options, targets=(Target("h1", cid, "web"),))
            async with stream:
                items = stream.items()
                first = await anext(items)
                await asyncio.sleep(0.5)  # the client takes nothing meanwhile
                assert stream.buffered() <= 10
                rest = [x async for batch in items if isinstance(batch, list) for x in batch]
    assert isinstance(first, list) and 1 <= len(first) <= 10
    lines = [x.line for x in [*first, *rest] if isinstance(x, LogEntry)]
    assert lines == [f"line {i}" for i in range(300)]


async def test_a_followed_selection_joins_a_later_container_on_the_change_signal_alone() -> None:
    """No discovery timer: nothing is re-read while nothing changes, and a container that starts
    later joins as soon as the state announces it."""
    from fleetd.config.model import HostSettings
    from fleetd.dockerapi import ContainerSummary
    from fleetd.fleet.records import HostStatus, container_record
    from fleetd.fleet.state import FleetState
    from fleetd.logs import Selection

    class CountingState(FleetState):
        reads = 0

        def containers(self, *args: Any, **kw: Any) -> Any:
            self.reads += 1
            return super().containers(*args, **kw)

    def row(cid: str, name: str) -> ContainerSummary:
        return ContainerSummary(
            Id=cid, Names=[f"/{name}"], Image="web:1", ImageID="sha256:" + "ab" * 32, State="running",
            Status="Up 1 second", Labels={"app": "web"}, Created=1_700_000_000,
        )  # fmt: skip

    async with LogEngine() as eng:
        cid1 = eng.add("web1", {"app": "web"})
        state = CountingState()
        state.add(HostSettings(name="h1", url=eng.url))
        state.set_host_status("h1", HostStatus.UP)
        state.upsert_containers("h1", [container_record("h1", row(cid1, "web1"), None)])
        async with DockerClient(eng.url) as client:
            options = StreamOptions(follow=True, tail=0, window=0.05)
            stream = LogStream(
                lambda _h: client, options, state=state, selection=Selection(labels=("app=web",))
            )
            subscribers = state.changes.subscribers
            stream.start()
            assert state.changes.subscribers == subscribers + 1  # it listens to the change signal
            async with stream:
                items = stream.items()
                assert await anext(items) is None  # an idle tick: nothing written yet
                quiet = state.reads
                await anext(items)  # another idle second: the selection was not read again
                assert state.reads == quiet
                state.upsert_containers(
                    "h1", [container_record("h1", row(eng.add("web2", {"app": "web"}), "web2"), None)]
                )
                eng.write("web2", "hello from a later container", at=stamp(5))
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                got: list[LogEntry] = []
                while not got:
                    batch = await anext(items)
                    if isinstance(batch, list):
                        got += [x for x in batch if isinstance(x, LogEntry)]
                assert [(x.container, x.line) for x in got] == [("web2", "hello from a later container")]
                assert loop.time() - t0 < 0.25  # at once: no discovery tick to wait for
                assert state.reads == quiet + 1  # one re-read, for the one change
                assert {t.name for t in stream.following} == {"web1", "web2"}
            assert state.changes.subscribers == subscribers  # closed with the stream
