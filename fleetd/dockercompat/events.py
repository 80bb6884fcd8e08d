"""``docker events`` across the fleet.

Every up host's own ``/events`` is read with ``since``/``until``/``filters`` forwarded (``node=`` is
applied here) and classic Swarm's node attributes are added (``node.name``, ``node.id``,
``node.addr``, ``node.ip``, ``from … node:NAME``, a top-level ``node``). With ``until`` the answer is
the hosts' history in time order, and it ends. Without, it follows live, and the fleet's change
signal adds what no daemon can say: Swarm's ``engine_disconnect`` / ``engine_connect`` /
``engine_reconnect`` events (``Type: swarm``) when a host goes down or comes back, and a host
that comes back is followed again from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
from aiohttp import web

from fleetd.dockercompat.context import Call
from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.reads import node_object
from fleetd.fleet.changes import ChangeBatch, HostChanged
from fleetd.fleet.records import HostRecord, HostStatus

__all__ = ["EVENT_STREAMS_MAX", "events"]

EVENTS_BUFFER_MAX = 100_000  # events held to sort a bounded (since..until) answer
#: Each `docker events` holds one stream to every up host: a bound on how many run at once.
EVENT_STREAMS_MAX = 32
_ONLY_DAEMON_EVENTS = frozenset({"container", "image", "label", "volume", "network", "daemon", "plugin", "config",
                                 "secret", "service", "node"})  # fmt: skip
Item = tuple[int, bytes] | None


def _values(raw: object) -> list[str]:
    if isinstance(raw, dict):
        return [str(k) for k, on in raw.items() if on]
    if isinstance(raw, list):
        return [str(v) for v in raw]
    return [str(raw)] if raw else []


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
                               "node.ip": node["IP"]})  # fmt: skip
    if isinstance(event.get("from"), str):
        event["from"] += f" node:{record.name}"
    event["node"] = {"Name": record.name, "Id": node["ID"], "Addr": node["Addr"], "Ip": node["IP"]}
    when = event.get("timeNano") or int(event.get("time") or 0) * 1_000_000_000
    return int(when), msgspec.json.encode(event) + b"\n"


def _engine_event(record: HostRecord, action: str) -> tuple[int, bytes]:
    """classic Swarm's event for a host's connection (``Type: swarm``)."""
    node = node_object(record)
    now = time.time_ns()
    attributes = {"node.name": record.name, "node.id": node["ID"], "node.addr": node["Addr"], "node.ip": node["IP"]}
    if record.last_error and action == "engine_disconnect":
        attributes["error"] = record.last_error
    event = {
        "status": action, "id": node["ID"] or record.name, "from": "fleetd", "Type": "swarm", "Action": action,
        "Actor": {"ID": node["ID"] or record.name, "Attributes": attributes}, "scope": "local",
        "time": now // 1_000_000_000, "timeNano": now,
        "node": {"Name": record.name, "Id": node["ID"], "Addr": node["Addr"], "Ip": node["IP"]},
    }  # fmt: skip
    return now, msgspec.json.encode(event) + b"\n"


def _engine_action(change: HostChanged) -> str | None:
    if change.after is HostStatus.UP:
        return "engine_connect" if change.before is HostStatus.UNKNOWN else "engine_reconnect"
    if change.before is HostStatus.UP and change.after in (HostStatus.DOWN, HostStatus.ERROR):
        return "engine_disconnect"
    return None


class _FanIn:
    def __init__(self, call: Call, query: str, wants_engine: Any) -> None:
        self.call = call
        self.query = query
        self.wants_engine = wants_engine
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=10_000)
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def follow(self, record: HostRecord, query: str | None = None) -> None:
        old = self.tasks.get(record.name)
        if old is not None and not old.done():
            return
        self.tasks[record.name] = asyncio.create_task(
            self._pump(record, self.query if query is None else query), name=f"docker-events:{record.name}"
        )

    async def _pump(self, record: HostRecord, query: str) -> None:
        try:
            path = await self.call.path_for(record.name, "/events")
            async with self.call.upstream(record.name).request("GET", path, query=query, stream=True) as resp:
                if resp.status >= 400:
                    return
                async for line in resp.content:
                    item = _decorate(line.strip(), record) if line.strip() else None
                    if item is not None:
                        await self.queue.put(item)
        except (aiohttp.ClientError, TimeoutError, OSError, DockerAPIError):
            return
        finally:
            await self.queue.put(None)

    async def watch_hosts(self, live_query: str, hosts: set[str] | None) -> None:
        """Engine events from the change signal; a host that comes back is followed again."""
        with self.call.fleet.state.changes.subscribe(maxsize=256) as sub:
            async for batch in sub:
                if not isinstance(batch, ChangeBatch):
                    continue  # lagged: the host streams themselves are unaffected
                for change in batch.changes:
                    if not isinstance(change, HostChanged) or (hosts is not None and change.host not in hosts):
                        continue
                    action = _engine_action(change)
                    record = self.call.fleet.state.get(change.host)
                    if action is None or record is None:
                        continue
                    if self.wants_engine(action):
                        await self.queue.put(_engine_event(record, action))
                    if change.after is HostStatus.UP:
                        self.follow(record, live_query)

    async def aclose(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def events(call: Call) -> web.StreamResponse:
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
    nodes = _values(filters.pop("node", None))
    chosen = [r for r in call.fleet.records() if not nodes or any(fnmatch.fnmatchcase(r.name, n) for n in nodes)]
    params = [(k, call.request.query[k]) for k in ("since", "until") if call.query(k)]
    if filters:
        params.append(("filters", msgspec.json.encode(filters).decode()))
    live_params = [(k, v) for k, v in params if k != "since"] + [("since", str(int(time.time())))]
    types, actions = _values(filters.get("type")), _values(filters.get("event"))

    def wants_engine(action: str) -> bool:
        if any(k in _ONLY_DAEMON_EVENTS for k in filters):
            return False
        return (not types or "swarm" in types) and (not actions or action in actions)

    svc = call.svc
    if svc.event_streams >= EVENT_STREAMS_MAX:
        raise DockerAPIError(429, f"{EVENT_STREAMS_MAX} `docker events` streams are open already; try again later")
    svc.event_streams += 1
    fan = _FanIn(call, urlencode(params), wants_engine)
    watcher: asyncio.Task[None] | None = None
    out = web.StreamResponse(status=200)
    out.headers["Content-Type"] = "application/json"
    out.enable_chunked_encoding()
    try:
        await out.prepare(call.request)
        for record in chosen:
            if record.status is HostStatus.UP:
                fan.follow(record)
        if call.query("until"):
            await _bounded(out, fan)
        else:
            hosts = {r.name for r in chosen} if nodes else None
            watcher = asyncio.create_task(fan.watch_hosts(urlencode(live_params), hosts), name="docker-events:hosts")
            while True:
                item = await fan.queue.get()
                if item is not None:
                    await out.write(item[1])
    except (ConnectionError, OSError):
        pass
    finally:
        svc.event_streams -= 1
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await fan.aclose()
    return out


async def _bounded(out: web.StreamResponse, fan: _FanIn) -> None:
    """Every followed host's history up to ``until``, in time order, then the end."""
    held: list[tuple[int, bytes]] = []
    running = len(fan.tasks)
    while running:
        item = await fan.queue.get()
        if item is None:
            running -= 1
        elif len(held) < EVENTS_BUFFER_MAX:
            held.append(item)
    held.sort(key=lambda e: e[0])
    for _, line in held:
        await out.write(line)
    await out.write_eof()
