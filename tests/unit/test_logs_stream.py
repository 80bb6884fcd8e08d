"""LogStream's bounds and the pieces under it: buffers, line splitting, Docker's timestamps."""

from __future__ import annotations

import asyncio
import struct
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
