"""Container logs: one container's lines (JSON, or NDJSON with ``follow=1``) and many merged (NDJSON).

``GET /api/v1/containers/{host}/{ref}/logs`` without ``follow`` answers one JSON document, as it always
has. With ``follow=1``, and always for ``GET /api/v1/logs``, the answer is ``application/x-ndjson``: one
:class:`~fleetd.logs.LogEntry` per line, and a final ``{"end": true, "reason": ...}`` when the server ends
the stream. The work is done by :class:`fleetd.logs.LogStream`; these handlers parse and write.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from aiohttp import web
from multidict import MultiMapping

from fleetd.api.actions import container_ref, engine_call, host_client
from fleetd.api.errors import BadRequest, NotFound, ServiceUnavailable, engine_error
from fleetd.api.keys import FLEET
from fleetd.api.params import get_bool, get_int, get_one, get_time
from fleetd.api.render import json_response
from fleetd.api.routes import OPERATOR, RouteTable
from fleetd.dockerapi import DockerClient, DockerError
from fleetd.logs import LogStream, LogStreams, Selection, StreamOptions, Target, TooManyStreams
from fleetd.logs.entries import split_timestamp
from fleetd.logs.stream import ClientFor, TooManyContainers
from fleetd.ops.targets import client_for, no_such_host

__all__ = ["LOG_STREAMS", "install", "routes"]

routes = RouteTable()
LOG_STREAMS = web.AppKey("log_streams", LogStreams)

LOG_TAIL_DEFAULT = 1000
LOG_TAIL_MAX = 10_000
MERGED_TAIL_DEFAULT = 100  # per container
LOG_BYTES_MAX = 8 * 1024 * 1024
LOG_TIMEOUT = 30.0
#: A client that takes nothing for this long is cut off (its buffers would hold upstream streams).
WRITE_TIMEOUT = 30.0
NDJSON_HEADERS = {
    "Content-Type": "application/x-ndjson",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies must pass lines through as they come
}


def _since(query: MultiMapping[str]) -> int | None:
    """``since`` for the Engine, which takes whole Unix seconds."""
    at = get_time(query, "since")
    return None if at is None else int(at)


def _tail(request: web.Request, default: int, *, allow_all: bool) -> int | None:
    """The ``tail`` parameter: a count, or (streams only) ``all`` → None."""
    if get_one(request.query, "tail") == "all":
        if not allow_all:
            raise BadRequest(
                f"tail=all needs follow=1 (the JSON answer is bounded); give a count up to {LOG_TAIL_MAX}",
                code="bad_parameter",
            )
        return None
    maximum = None if allow_all else LOG_TAIL_MAX
    return get_int(request.query, "tail", default, minimum=0, maximum=maximum)


def _clients(request: web.Request) -> ClientFor:
    state, poller = request.app[FLEET].state, request.app[FLEET].poller

    def lookup(host: str) -> DockerClient:
        return client_for(state, poller, host)

    return lookup


async def _send(request: web.Request, stream: LogStream) -> web.StreamResponse:
    settings = request.app[FLEET].settings.container_logs
    try:
        with request.app[LOG_STREAMS].register(stream, settings.max_streams):
            async with stream:
                return await _write(request, stream)
    except TooManyStreams as exc:
        raise ServiceUnavailable(str(exc), code="too_many_streams") from None


async def _write(request: web.Request, stream: LogStream) -> web.StreamResponse:
    """Write the stream as NDJSON until it ends, the client leaves, or the client stops reading."""
    try:
        stream.start()
    except TooManyContainers as exc:
        raise BadRequest(str(exc), code="too_many_containers") from None
    response = web.StreamResponse(headers=NDJSON_HEADERS)
    await response.prepare(request)
    encode = msgspec.json.Encoder().encode
    async with contextlib.aclosing(stream.items()) as items:
        async for item in items:
            transport = request.transport
            if transport is None or transport.is_closing():
                return response  # the client left: closing the stream closes every upstream stream
            if item is None:
                continue
            data = (
                b"".join(encode(x) + b"\n" for x in item) if isinstance(item, list) else encode(item) + b"\n"
            )
            try:
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await response.write(data)
            except TimeoutError:
                transport.abort()
                return response
            except ConnectionError:
                return response
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


async def _plain(request: web.Request) -> web.Response:
    """The whole (bounded) answer as one JSON document."""
    q = request.query
    tail = _tail(request, LOG_TAIL_DEFAULT, allow_all=False)
    since = _since(q)
    timestamps = bool(get_bool(q, "timestamps", False))
    host, ref = container_ref(request)
    client = host_client(request, host)
    lines: list[dict[str, str]] = []
    size = 0
    truncated = False
    try:
        inspected = await client.containers.inspect(ref)
        tty = inspected.Config.Tty if inspected.Config is not None else False
        stream = client.containers.logs(
            inspected.Id, tail=tail, since=since, timestamps=timestamps, tty=tty, timeout=LOG_TIMEOUT
        )
        async with contextlib.aclosing(stream) as log_lines:
            async for item in log_lines:
                entry = {"stream": item.stream, "line": item.line}
                if timestamps:
                    stamp, _, text = split_timestamp(item.line)
                    if stamp is not None:
                        entry = {"stream": item.stream, "time": stamp, "line": text}
                lines.append(entry)
                size += len(item.line)
                if size > LOG_BYTES_MAX:
                    truncated = True
                    break
    except DockerError as exc:
        raise engine_error(host, exc) from None
    return json_response(
        {
            "host": host,
            "id": inspected.Id,
            "name": inspected.Name.lstrip("/"),
            "tty": tty,
            "lines": lines,
            "count": len(lines),
            "truncated": truncated,
        }
    )


@routes.get("/api/v1/containers/{host}/{ref}/logs", OPERATOR, "container.logs", "A container's log lines, stdout and stderr told apart; with follow=1 an NDJSON stream until the container stops (role: container_logs.role)", "containers", query=("tail", "since", "timestamps", "follow"), errors=(404, 409, 502, 503, 504), logs=True)
async def container_logs(request: web.Request) -> web.StreamResponse:
    q = request.query
    if not get_bool(q, "follow", False):
        return await _plain(request)
    tail = _tail(request, LOG_TAIL_DEFAULT, allow_all=True)
    since = _since(q)
    get_bool(q, "timestamps", False)  # validated; streamed lines always carry their time
    host, ref = container_ref(request)
    client = host_client(request, host)
    inspected = await engine_call(host, client.containers.inspect(ref))
    target = Target(host, inspected.Id, inspected.Name.lstrip("/"))
    window = request.app[FLEET].settings.container_logs.merge_window
    options = StreamOptions(follow=True, tail=tail, since=since, window=window)
    return await _send(request, LogStream(_clients(request), options, targets=(target,)))


@routes.get("/api/v1/logs", OPERATOR, "logs.merged", "The merged logs of the matching containers across hosts (the running ones when followed), as NDJSON in timestamp order; with follow=1 containers that start later join (role: container_logs.role)", "containers", query=("label", "host", "name", "tail", "since", "follow"), errors=(400, 404, 503), logs=True)
async def merged_logs(request: web.Request) -> web.StreamResponse:
    q = request.query
    labels = tuple(q.getall("label", []))
    hosts = tuple(q.getall("host", []))
    name = get_one(q, "name") or None
    if not (labels or hosts or name):
        raise BadRequest(
            "say which containers: label=key or key=value, host= or name= (all repeatable but name)",
            code="missing_selector",
        )
    state = request.app[FLEET].state
    for host in hosts:
        if host not in state:
            raise NotFound(no_such_host(host), code="unknown_host")
    settings = request.app[FLEET].settings.container_logs
    options = StreamOptions(
        follow=bool(get_bool(q, "follow", False)),
        tail=_tail(request, MERGED_TAIL_DEFAULT, allow_all=True),
        since=_since(q),
        window=settings.merge_window,
        max_containers=settings.max_containers,
    )
    selection = Selection(hosts=hosts, labels=labels, name=name)
    stream = LogStream(_clients(request), options, state=state, selection=selection)
    return await _send(request, stream)


async def _close_streams(app: web.Application) -> None:
    app[LOG_STREAMS].close_all("fleetd is shutting down")


def install(app: web.Application) -> None:
    app[LOG_STREAMS] = LogStreams()
    app.on_shutdown.append(_close_streams)
