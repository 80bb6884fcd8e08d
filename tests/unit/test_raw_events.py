"""The raw event stream (fleetd/dockerapi/raw_events.py): the same events and errors as the client's
stream, by callback, against the fake Engine and hand-written servers that split the bytes anywhere."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from fleetd.dockerapi import (
    DockerClient,
    EngineHTTPError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnreachable,
)
from fleetd.dockerapi.events import EngineEvent, event_params, format_timestamp
from fleetd.dockerapi.pinger import raw_pinger
from fleetd.dockerapi.raw_events import RawEventStream
from tests.fakes import FakeEngine, Fault, docker_20_10
from tests.harness import eventually

LINE = (
    b'{"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"name":"x"}},'
    b'"time":1,"timeNano":1000000001}\n'
)


@asynccontextmanager
async def raw_stream(
    client: DockerClient, params: dict[str, str | int] | None = None, **kw: float | int
) -> AsyncIterator[tuple[RawEventStream, list[EngineEvent], asyncio.Future[None]]]:
    pinger = raw_pinger(client)
    assert pinger is not None
    got: list[EngineEvent] = []
    try:
        async with RawEventStream(pinger, client, params or {}, **kw) as stream:  # type: ignore[arg-type]
            yield stream, got, stream.begin(got.append)
    finally:
        pinger.close()


async def test_the_fake_engines_events_by_callback_replay_then_live() -> None:
    async with FakeEngine(docker_20_10(containers=3)) as eng, DockerClient(eng.url) as client:
        await client.containers.list_body(all=True)  # the API version is known
        first = next(iter(eng.state.containers))
        eng.set_state(first, "exited", 3)
        die = eng.events._log[-1]
        eng.exec_noise(first)
        params = event_params(die["timeNano"], None, {"type": ["container"]})
        async with raw_stream(client, params, open_timeout=2.0) as (stream, got, ended):
            assert stream.opened
            await eventually(lambda: len(got) == 4, what="the replay")
            assert [e.action for e in got] == ["die", "exec_create", "exec_start", "exec_die"]
            assert got[0].time_nano == die["timeNano"] and got[0].Actor.Attributes["exitCode"] == "3"
            eng.set_state(first, "running")
            await eventually(lambda: len(got) == 5, what="a live event")
            assert got[4].action == "start" and first == got[4].Actor.ID
            assert stream.lines == 5 and not ended.done()
            eng.restart_daemon()
            with pytest.raises(EngineUnreachable, match="ended its event stream"):
                await asyncio.wait_for(ended, 2)
        paths = [p for p in eng.paths() if "/events" in p]
        assert paths[0].startswith(f"/v{client.api_version}/events?")
        assert f"since={format_timestamp(die['timeNano'])}" in paths[0]


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(serve: Serve) -> AsyncIterator[DockerClient]:
    """A hand-written daemon (API 1.41): ``/_ping`` answers, ``serve`` the rest."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET /_ping") or head.startswith(b"HEAD /_ping"):
                    writer.write(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK")
                    await writer.drain()
                    continue
                assert head.startswith(b"GET /v1.41/events"), head
                await serve(reader, writer)
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with DockerClient(f"tcp://127.0.0.1:{port}", api_version="1.41") as client:
            yield client
    finally:
        srv.close()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_chunks_and_lines_split_anywhere_then_a_clean_end() -> None:
    body = chunk(LINE[:10]) + chunk(LINE[10:] + b"\x1e" + LINE.replace(b"start", b"die")) + chunk(b"\n") + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = head + body
        for i in range(len(data)):  # one byte at a time: every boundary is somewhere
            w.write(data[i : i + 1])
            await w.drain()
            if i % 7 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(5)

    async with server(serve) as client, raw_stream(client, open_timeout=2.0) as (stream, got, ended):
        with pytest.raises(EngineUnreachable, match="ended its event stream"):  # the last chunk
            await asyncio.wait_for(ended, 3)
        assert [(e.action, e.Actor.ID, e.Actor.Attributes) for e in got] == [
            ("start", "abc", {"name": "x"}), ("die", "abc", {"name": "x"}),
        ]  # fmt: skip
        assert stream.lines == 2


@pytest.mark.parametrize(
    ("line", "error", "match"),
    [
        (b"not json\n", EngineProtocolError, "invalid event line"),
        (b'{"message":"no such filter","response":400}\n', EngineHTTPError, "no such filter"),
    ],
)
async def test_a_bad_line_or_an_error_object_ends_the_stream(line: bytes, error: type[Exception], match: str) -> None:
    async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(LINE) + chunk(line))
        await w.drain()
        await asyncio.sleep(5)

    async with server(serve) as client, raw_stream(client, open_timeout=2.0) as (_s, got, ended):
        with pytest.raises(error, match=match):
            await asyncio.wait_for(ended, 3)
        assert [e.action for e in got] == ["start"]


async def test_an_identity_body_ends_with_the_connection() -> None:
    async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + LINE + LINE.replace(b"start", b"stop"))
        await w.drain()

    async with server(serve) as client, raw_stream(client, open_timeout=2.0) as (_s, got, ended):
        with pytest.raises(EngineUnreachable, match="ended its event stream"):
            await asyncio.wait_for(ended, 3)
        assert [e.action for e in got] == ["start", "stop"]


async def test_a_refusal_raises_the_daemons_message_with_its_status() -> None:
    message = b'{"message":"invalid filter \'bogus\'"}'

    async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(message), message))
        await w.drain()
        await asyncio.sleep(5)

    unretrieved: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        async with server(serve) as client:
            with pytest.raises(EngineHTTPError, match="invalid filter 'bogus'") as info:
                async with raw_stream(client, open_timeout=2.0):
                    pass
            assert info.value.status == 400
            del info  # its traceback holds the stream
        await asyncio.sleep(0.1)  # the aborted connection is lost, the loop lets go of the stream
        gc.collect()  # a stream that never opened leaves no exception unretrieved in ``ended``
        await asyncio.sleep(0)
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)


async def test_an_endless_line_is_bounded_and_a_silent_daemon_times_out() -> None:
    async def endless(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            w.write(chunk(b"x" * 65536))
            await w.drain()
        await asyncio.sleep(5)

    async with server(endless) as client, raw_stream(client, open_timeout=2.0, max_line=256 * 1024) as (_s, _g, ended):
        with pytest.raises(EngineProtocolError, match="longer than"):
            await asyncio.wait_for(ended, 3)

    async def silent(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with server(silent) as client:
        with pytest.raises(EngineTimeout, match=r"no answer within 0\.3s to GET /events"):
            async with raw_stream(client, open_timeout=0.3):
                pass


async def test_a_refused_connection_is_unreachable_and_a_hung_fake_engine_times_out() -> None:
    async with FakeEngine(docker_20_10(containers=1)) as eng, DockerClient(eng.url) as client:
        await client.containers.list_body(all=True)
        eng.behaviour.faults["events"] = Fault.HANG
        with pytest.raises(EngineTimeout, match="GET /events"):
            async with raw_stream(client, open_timeout=0.3):
                pass
        port = eng.port
    async with DockerClient(f"tcp://127.0.0.1:{port}", api_version="1.41") as client:
        with pytest.raises(EngineUnreachable, match=r"GET /events on .* failed"):
            async with raw_stream(client, open_timeout=2.0):
                pass
