"""``GET /events`` of a fake Engine, with dockerd's and podman's differences.

dockerd (engine-events.md E1-E7): a ring of the last 256 events of every type, ``since`` inclusive
at nanosecond precision, replay then live, one JSON object and ``\\n`` per event, no keepalive.
podman (P1-P5): a persisted log that rotates at ``rotate_at`` entries keeping the newer half; a
stream opened with ``since`` ends at the next rotation, ``since`` is exclusive and read as a float;
container removal is ``remove``; a bad filter or ``since`` is an error object written after the 200.

Tests drive it through the engine (``engine.events.publish(...)``, or the container actions, which
publish what the real daemon would) and may move the daemon's clock (``clock_offset_ns``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any, Literal

from aiohttp import web

__all__ = ["EventLog", "serve_events"]

Json = dict[str, Any]
Product = Literal["docker", "podman"]

#: dockerd's ``eventsLimit``.
DOCKER_RING = 256
_END = object()  # queued to end a subscriber's stream


class EventLog:
    """Every event one fake Engine published, and its live subscribers."""

    def __init__(self, product: Product, *, ring: int = DOCKER_RING, rotate_at: int | None = None) -> None:
        self.product = product
        self.ring_size = ring
        self.rotate_at = rotate_at  # podman: rotate the log at this many entries (None: never)
        self.clock_offset_ns = 0
        self._log: deque[Json] = deque(maxlen=ring if product == "docker" else None)
        self._subscribers: set[_Subscriber] = set()
        self._last_ns = 0
        self.published = 0
        self.rotations = 0

    def now_ns(self) -> int:
        # Strictly increasing: the tests compare cursors, and two events in one clock tick would tie.
        ns = max(time.time_ns() + self.clock_offset_ns, self._last_ns + 1)
        self._last_ns = ns
        return ns

    def publish(
        self,
        type_: str,
        action: str,
        actor_id: str,
        attributes: dict[str, str] | None = None,
        **extra: Any,
    ) -> Json:
        ns = self.now_ns()
        event: Json = {
            "Type": type_,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local",
            "time": ns // 1_000_000_000,
            "timeNano": ns,
            **extra,
        }
        self._log.append(event)
        self.published += 1
        for sub in list(self._subscribers):
            sub.offer(event)
        if self.product == "podman" and self.rotate_at is not None and len(self._log) >= self.rotate_at:
            self.rotate()
        return event

    def rotate(self) -> None:
        """podman's log rotation: keep the newer half; streams opened with ``since`` end."""
        keep = list(self._log)[len(self._log) // 2 :]
        self._log.clear()
        self._log.extend(keep)
        self.rotations += 1
        for sub in list(self._subscribers):
            if sub.since is not None:
                sub.end()
            else:  # podman 4.3 re-opens the file and emits the kept half again (podman#17665)
                for event in keep:
                    sub.offer(event)
        self.publish("system", "log-rotation", "", {})  # written to the new log, like podman's

    def restart(self) -> None:
        """The daemon restarted: its memory (dockerd's ring) is gone and every stream ends."""
        if self.product == "docker":
            self._log.clear()
        self.end_all()

    def end_all(self) -> None:
        for sub in list(self._subscribers):
            sub.end()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _replay(self, since: int | None, until: int | None) -> list[Json]:
        if since is None:
            return []
        if self.product == "docker":
            out = [e for e in self._log if e["timeNano"] >= since]  # inclusive (E2)
        else:
            out = [e for e in self._log if e["timeNano"] > since]  # exclusive (P4)
        if until is not None:
            out = [e for e in out if e["timeNano"] <= until]
        return out

    def _subscribe(self, since: int | None, filters: dict[str, list[str]]) -> _Subscriber:
        sub = _Subscriber(self, since, filters)
        self._subscribers.add(sub)
        return sub


class _Subscriber:
    def __init__(self, log: EventLog, since: int | None, filters: dict[str, list[str]]) -> None:
        self.log = log
        self.since = since
        self.filters = filters
        self.queue: asyncio.Queue[Json | object] = asyncio.Queue()

    def offer(self, event: Json) -> None:
        if _matches(event, self.filters, self.log.product):
            self.queue.put_nowait(event)

    def end(self) -> None:
        self.queue.put_nowait(_END)
        self.log._subscribers.discard(self)


def _matches(event: Json, filters: dict[str, list[str]], product: Product) -> bool:
    for key, values in filters.items():
        if key == "type":
            ok = event["Type"] in values
        elif key == "event":
            action = str(event["Action"])
            prefixed = ("health_status", "exec_create", "exec_start")
            ok = any(
                action == v or (product == "docker" and v in prefixed and action.startswith(v))
                for v in values
            )
        elif key == "container":
            attrs = event["Actor"]["Attributes"]
            ok = event["Type"] == "container" and (
                event["Actor"]["ID"] in values or attrs.get("name") in values
            )
        elif key == "label":
            attrs = event["Actor"]["Attributes"]
            ok = all(
                attrs.get(k) == v if sep else k in attrs for k, sep, v in (s.partition("=") for s in values)
            )
        else:
            ok = True
        if not ok:
            return False
    return True


def _parse_time(raw: str | None, product: Product) -> int | None:
    """``<sec>[.<frac>]`` → ns. dockerd scales the fraction exactly; podman goes through a float."""
    if raw is None or raw == "":
        return None
    if product == "podman":
        return int(float(raw) * 1_000_000_000)
    sec, _, frac = raw.partition(".")
    if not sec.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        raise ValueError(raw)
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _line(obj: Json) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def serve_events(request: web.Request, log: EventLog, headers: dict[str, str]) -> web.StreamResponse:
    query = request.rel_url.query
    product = log.product
    problem: str | None = None
    try:
        since = _parse_time(query.get("since"), product)
        until = _parse_time(query.get("until"), product)
    except ValueError:
        if product == "docker":
            return web.json_response({"message": f"invalid since/until {query.get('since')!r}"}, status=400)
        since = until = None
        problem = f"failed to parse since/until {query.get('since')!r}"
    filters: dict[str, list[str]] = {}
    if "filters" in query:
        try:
            raw = json.loads(query["filters"])
            filters = {
                k: list(v) if isinstance(v, list) else [x for x, on in v.items() if on]
                for k, v in raw.items()
            }
        except (ValueError, AttributeError, TypeError):
            if product == "docker":
                return web.json_response({"message": "invalid filters"}, status=400)
            problem = "invalid filters"
    if product == "podman" and any(
        k not in ("type", "event", "container", "label", "image") for k in filters
    ):
        problem = f"unsupported filter {sorted(filters)}"
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    await response.prepare(request)
    if problem is not None:  # podman: the error goes into the stream after the 200, then it ends
        await response.write(_line({"cause": problem, "message": problem, "response": 500}))
        await response.write_eof()
        return response
    # Snapshot and subscribe with no await in between, like dockerd's mutex (E2).
    replay = [e for e in log._replay(since, until) if _matches(e, filters, product)]
    sub = log._subscribe(since, filters)
    try:
        for event in replay:
            await response.write(_line(event))
        if until is not None and until <= log.now_ns():
            await response.write_eof()
            return response
        while True:
            if until is not None:
                remaining = (until - log.now_ns()) / 1e9
                try:
                    item = await asyncio.wait_for(sub.queue.get(), max(remaining, 0))
                except TimeoutError:
                    break
            else:
                item = await sub.queue.get()
            if item is _END:
                break
            assert isinstance(item, dict)
            if until is not None and item["timeNano"] > until:
                break
            await response.write(_line(item))
        await response.write_eof()
    finally:
        log._subscribers.discard(sub)
    return response
