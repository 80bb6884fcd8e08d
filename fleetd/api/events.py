"""``GET /api/v1/events``: the fleet feed as Server-Sent Events (docs/live.md has the protocol).

Each client gets one writer loop and one bounded feed subscription. A client whose queue
overflows, or whose socket does not take a frame within ``write_timeout``, is closed: it
resumes with ``Last-Event-ID`` (or gets a reset), and nobody else waits for it. Resuming
from an id this process cannot serve answers 200 with an ``event: reset`` frame first,
because an EventSource gives up for good on any other status.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleetd.api.errors import BadRequest, NotFound
from fleetd.api.keys import FLEET
from fleetd.api.render import host_view, json_response
from fleetd.api.routes import VIEWER, RouteTable
from fleetd.config.events import EventsSettings
from fleetd.fleet.feed import EVENT_TYPES, FleetEvent, Lagged
from fleetd.fleet.match import label_matches
from fleetd.ops.targets import no_such_host
from fleetd.util.timefmt import rfc3339

__all__ = ["EVENT_ID_HEADER", "SSE", "EventFilter", "SseHub", "SseSettings", "event_id_middleware", "install", "routes"]

routes = RouteTable()
log = structlog.get_logger("fleetd.api.events")

EVENT_ID_HEADER: Final = "X-Fleet-Event-Id"
COALESCE: Final = 0.1  # seconds a client's writer waits after a write, letting frames gather
_PARAMS: Final = {"host", "label", "type", "last_event_id"}
_TYPE_GROUPS: Final = {"container", "host"}
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class SseSettings:
    heartbeat: float = 15.0
    write_timeout: float = 30.0
    queue: int = 1000  # frames a client may be behind before it is closed
    max_subscribers: int = 1000

    @classmethod
    def of(cls, events: EventsSettings) -> SseSettings:
        return cls(events.heartbeat, events.write_timeout, events.queue, events.max_subscribers)


@dataclass(slots=True, eq=False)
class SseHub:
    """The open streams (for the cap, metrics and shutdown) and their settings."""

    settings: SseSettings = field(default_factory=SseSettings)
    streams: set[web.StreamResponse] = field(default_factory=set)
    closed_slow: int = 0  # clients closed because they fell behind or stopped reading
    refused: int = 0  # clients refused at the cap
    sent: int = 0
    #: Each event is encoded once, however many clients it is sent to.
    _frames: OrderedDict[str, bytes] = field(default_factory=OrderedDict)

    def frame(self, event: FleetEvent) -> bytes:
        data = self._frames.get(event.id)
        if data is None:
            data = self._frames[event.id] = frame(event)
            if len(self._frames) > 4096:
                self._frames.popitem(last=False)
        return data


SSE: Final = web.AppKey("sse", SseHub)


@dataclass(frozen=True, slots=True)
class EventFilter:
    hosts: frozenset[str] = frozenset()
    labels: tuple[str, ...] = ()
    types: frozenset[str] = frozenset()  # exact types and groups ("container", "host")

    def accepts(self, event: FleetEvent) -> bool:
        if self.hosts and event.host not in self.hosts:
            return False
        if self.types and event.type not in self.types and event.type.partition(".")[0] not in self.types:
            return False
        # ?label= selects containers by their labels; host events are not about one container.
        return not (
            self.labels
            and event.container is not None
            and not label_matches(event.container.labels, self.labels)
        )


def frame_data(event: FleetEvent) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "time": rfc3339(event.time),
        "host": event.host,
    }
    if event.type.startswith("container."):
        data["container"] = event.container
        if event.type == "container.changed":
            data["fields"] = list(event.fields)
        if event.action is not None:
            data["action"] = event.action
        if event.exit_code is not None:
            data["exit_code"] = event.exit_code
    elif event.type == "host.changed":
        data.update(before=event.before, after=event.after, record=event.record)
    elif event.type == "host.resynced":
        data.update(gap=bool(event.gap), record=event.record)
    return data


def frame(event: FleetEvent) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event.id.encode(),
        event.type.encode(),
        _encode(frame_data(event)),
    )


def reset_frame(head_id: str, reason: str) -> bytes:
    data = {
        "type": "reset",
        "reason": reason,
        "id": head_id,
        "snapshot": ["/api/v1/containers", "/api/v1/hosts"],
    }
    return b"id: %s\nevent: reset\ndata: %s\n\n" % (head_id.encode(), _encode(data))


def _filter(request: web.Request) -> EventFilter:
    q = request.query
    fleet = request.app[FLEET].state
    hosts = q.getall("host", [])
    for h in hosts:
        if h not in fleet:
            raise NotFound(no_such_host(h), code="unknown_host")
    labels = tuple(q.getall("label", []))
    if any(not sel.partition("=")[0] for sel in labels):
        raise BadRequest("parameter 'label' must be 'key' or 'key=value'", code="bad_parameter")
    types = [t for raw in q.getall("type", []) for t in raw.split(",") if t]
    allowed = _TYPE_GROUPS | set(EVENT_TYPES)
    for t in types:
        if t not in allowed:
            raise BadRequest(
                f"parameter 'type': {t!r} is not one of {', '.join(sorted(allowed))}", code="bad_parameter"
            )
    return EventFilter(frozenset(hosts), labels, frozenset(types))


@routes.get(
    "/api/v1/events",
    VIEWER,
    "events.stream",
    "Fleet changes as Server-Sent Events (text/event-stream; resumable, see docs/live.md)",
    "fleet",
    query=("host", "label", "type", "last_event_id"),
    errors=(400, 404, 503),
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    hub = request.app[SSE]
    feed = request.app[FLEET].feed
    settings = hub.settings
    flt = _filter(request)
    if len(hub.streams) >= settings.max_subscribers:
        hub.refused += 1
        return json_response(
            {
                "error": {
                    "code": "too_many_subscribers",
                    "message": f"{len(hub.streams)} event streams are open, the limit is "
                    f"{settings.max_subscribers} (events.max_subscribers); retry later",
                    "limit": settings.max_subscribers,
                }
            },
            status=503,
            headers={"Retry-After": "5"},
        )
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    sub, replay, reason = feed.open(last_id or None, settings.queue)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    hub.streams.add(resp)
    transport = request.transport
    try:
        await resp.prepare(request)

        async def send(data: bytes) -> None:
            async with asyncio.timeout(settings.write_timeout):
                await resp.write(data)

        retry = random.randint(2000, 5000)  # spread reconnects after a restart
        await send(b"retry: %d\n: fleetd %s\n\n" % (retry, feed.head_id.encode()))
        if reason is not None:
            await send(reset_frame(feed.head_id, reason))
        for event in replay:
            if flt.accepts(event):
                await send(frame(event))
        lagged = False
        while not lagged:
            item = await sub.get(timeout=settings.heartbeat)
            if item is None:
                if sub.closed:
                    break  # shutdown
                await send(b": ping\n\n")
                continue
            chunks: list[bytes] = []
            while item is not None:  # everything that is queued goes out in one write
                if isinstance(item, Lagged):
                    hub.closed_slow += 1
                    log.info(
                        "event stream closed: client fell behind", missed=item.missed, peer=request.remote
                    )
                    lagged = True
                    break
                if flt.accepts(item):
                    chunks.append(hub.frame(item))
                item = sub.get_nowait()
            if chunks:
                await send(b"".join(chunks))
                hub.sent += len(chunks)
            # At most one wake-up per client per COALESCE seconds: with a thousand clients a busy
            # fleet costs a few thousand writes a second, not one per event and client.
            await asyncio.sleep(COALESCE)
    except TimeoutError:
        hub.closed_slow += 1
        log.info("event stream closed: client stopped reading", peer=request.remote)
        if transport is not None:
            transport.abort()
    except (ConnectionError, RuntimeError):
        pass  # the client left (RuntimeError: aiohttp's "cannot write to closing transport")
    finally:
        sub.close()
        hub.streams.discard(resp)
    return resp


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LIST_PATHS: Final = frozenset({"/api/v1/containers", "/api/v1/hosts"})


@web.middleware
async def event_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``X-Fleet-Event-Id`` on the list answers: the feed's head *before* the state is read, so a
    client that lists and then watches from that id misses nothing (it may see an event twice)."""
    if request.path not in _LIST_PATHS:
        return await handler(request)
    head = request.app[FLEET].feed.head_id
    response = await handler(request)
    if not response.prepared:
        response.headers[EVENT_ID_HEADER] = head
    return response


async def _close_streams(app: web.Application) -> None:
    app[FLEET].feed.close_all()  # every writer loop wakes up, sees its subscription closed and ends


class _SseCollector(Collector):
    """The event streams' figures, read from the hub at scrape time."""

    def __init__(self, hub: SseHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        open_ = GaugeMetricFamily("fleetd_sse_subscribers", "Open GET /api/v1/events streams")
        open_.add_metric([], float(len(hub.streams)))
        slow = CounterMetricFamily(
            "fleetd_sse_closed_slow", "Event streams closed because the client fell behind or stopped reading"
        )
        slow.add_metric([], float(hub.closed_slow))
        refused = CounterMetricFamily("fleetd_sse_refused", "Event streams refused at events.max_subscribers")
        refused.add_metric([], float(hub.refused))
        sent = CounterMetricFamily("fleetd_sse_frames_sent", "Event frames written to clients")
        sent.add_metric([], float(hub.sent))
        yield from (open_, slow, refused, sent)


def _export(hub: SseHub, registry: CollectorRegistry) -> None:
    with contextlib.suppress(ValueError):  # one app per fleet; a second create_app keeps the first's
        registry.register(_SseCollector(hub))


def install(app: web.Application, settings: SseSettings) -> None:
    app[SSE] = SseHub(settings)
    fleet = app[FLEET]
    state = fleet.state

    def render_host(name: str) -> dict[str, Any] | None:
        record = state.get(name)
        if record is None:
            return None
        view = host_view(record, state.clock(), state.engine_twins(name))  # O(twins), once per host event
        return msgspec.to_builtins(view)  # type: ignore[no-any-return]

    fleet.live.pump.render_host = render_host
    _export(app[SSE], fleet.metrics.registry)
    app.middlewares.append(event_id_middleware)
    app.on_shutdown.append(_close_streams)
