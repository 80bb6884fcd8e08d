"""``/_ping``, ``/version``, ``/info`` and ``/events`` for the fleet as one engine."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
from aiohttp import web

from fleetd.dockercompat.context import Call
from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.reads import fleet_info, fleet_version, node_object
from fleetd.dockercompat.responses import json_ok
from fleetd.fleet.records import HostRecord

__all__ = ["events", "info", "ping", "version"]

EVENTS_BUFFER_MAX = 100_000  # events held to sort a bounded (since..until) answer
#: Each `docker events` holds one stream to every up host: a bound on how many run at once.
EVENT_STREAMS_MAX = 32


async def ping(call: Call) -> web.StreamResponse:
    resp = web.Response(
        body=b"" if call.request.method == "HEAD" else b"OK",
        headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"},
    )
    resp.headers["Content-Type"] = "text/plain; charset=utf-8"
    return resp


async def version(call: Call) -> web.StreamResponse:
    return json_ok(fleet_version(call.fleet, call.svc.advertised()))


async def info(call: Call) -> web.StreamResponse:
    return json_ok(fleet_info(call.fleet))


def _decorate(raw: bytes, record: HostRecord) -> tuple[int, bytes] | None:
    try:
        event = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(event, dict):
        return None
    node = node_object(record)
    actor = event.get("Actor")
    if isinstance(actor, dict):
        attributes = actor.setdefault("Attributes", {})
        if isinstance(attributes, dict):
            attributes.update({"node.name": record.name, "node.id": node["ID"], "node.addr": node["Addr"],
                               "node.ip": node["IP"]})
    if isinstance(event.get("from"), str):
        event["from"] += f" node:{record.name}"
    event["node"] = {"Name": record.name, "Id": node["ID"], "Addr": node["Addr"], "Ip": node["IP"]}
    when = event.get("timeNano") or int(event.get("time") or 0) * 1_000_000_000
    return int(when), msgspec.json.encode(event) + b"\n"


async def events(call: Call) -> web.StreamResponse:
    """Every up host's ``/events`` with since/until/filters forwarded (``node`` applied here),
    Swarm's node attributes added. With ``until``, the answer is sorted by time and ends."""
    filters: dict[str, object] = {}
    raw = call.query("filters")
    if raw:
        try:
            decoded = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise DockerAPIError(400, "invalid filter: not JSON") from None
        if not isinstance(decoded, dict):
            raise DockerAPIError(400, "invalid filter: expected a JSON object")
        filters = decoded
    node_filter = filters.pop("node", None)
    nodes = list(node_filter) if isinstance(node_filter, (dict, list)) else []
    records = [r for r in call.fleet.up_records() if not nodes or any(fnmatch.fnmatchcase(r.name, n) for n in nodes)]
    params = [(k, call.request.query[k]) for k in ("since", "until") if call.query(k)]
    if filters:
        params.append(("filters", msgspec.json.encode(filters).decode()))
    query = urlencode(params)
    bounded = bool(call.query("until"))
    queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=10_000)

    async def pump(record: HostRecord) -> None:
        try:
            path = await call.path_for(record.name, "/events")
            async with call.upstream(record.name).request("GET", path, query=query, stream=True) as resp:
                if resp.status >= 400:
                    return
                async for line in resp.content:
                    item = _decorate(line.strip(), record) if line.strip() else None
                    if item is not None:
                        await queue.put(item)
        except (aiohttp.ClientError, TimeoutError, OSError, DockerAPIError):
            return
        finally:
            await queue.put(None)

    svc = call.svc
    if svc.event_streams >= EVENT_STREAMS_MAX:
        raise DockerAPIError(429, f"{EVENT_STREAMS_MAX} `docker events` streams are open already; try again later")
    svc.event_streams += 1
    try:
        return await _stream_events(call, records, pump, queue, bounded)
    finally:
        svc.event_streams -= 1


async def _stream_events(
    call: Call,
    records: list[HostRecord],
    pump: Callable[[HostRecord], Coroutine[Any, Any, None]],
    queue: asyncio.Queue[tuple[int, bytes] | None],
    bounded: bool,
) -> web.StreamResponse:
    out = web.StreamResponse(status=200)
    out.headers["Content-Type"] = "application/json"
    out.enable_chunked_encoding()
    await out.prepare(call.request)
    tasks = [asyncio.create_task(pump(r), name=f"docker-events:{r.name}") for r in records]
    held: list[tuple[int, bytes]] = []
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif bounded:
                if len(held) < EVENTS_BUFFER_MAX:
                    held.append(item)
            else:
                await out.write(item[1])
        held.sort(key=lambda e: e[0])
        for _, line in held:
            await out.write(line)
        await out.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return out
