"""The route table: every call fleetd answers, who may make it, and whether read-only mode allows it.

Paths are matched after the optional ``/vX.Y`` prefix is removed and after URL decoding. Container
references may carry a slash (``d2/web4``: the CLI and docker-py leave it unescaped), so they are
greedy. Anything not listed answers 501 "not supported by fleetd".
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from aiohttp import web

from fleetd.dockercompat import containers, events, images, system
from fleetd.dockercompat.context import Call
from fleetd.dockercompat.security import Access

__all__ = ["ROUTES", "Route", "match_route"]

Handler = Callable[[Call], Awaitable[web.StreamResponse]]

_R, _O, _P = Access.VIEWER, Access.OPERATOR, Access.PUBLIC
_REF = r"(?P<ref>[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)?)"
_ID = r"(?P<id>[A-Za-z0-9]+)"
_IMAGE = r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.:@/-]*)"


@dataclass(frozen=True, slots=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler
    access: Access
    action: str  # the audit log's name; "" for reads (not audited)
    read_only: bool  # allowed when docker_api.read_only is on
    logs: bool = False  # container logs: the role comes from container_logs.role

    @property
    def mutating(self) -> bool:
        return bool(self.action)


def _r(methods: str, path: str, handler: Handler, access: Access, action: str = "", ro: bool = False) -> Route:
    return Route(frozenset(methods.split("|")), re.compile(f"^{path}$"), handler, access, action, ro)


def _act(name: str) -> Handler:
    return partial(containers.action, name=name)


ROUTES: tuple[Route, ...] = (
    _r("GET|HEAD", "/_ping", system.ping, _P, ro=True),
    _r("GET", "/version", system.version, _P, ro=True),
    _r("GET", "/info", system.info, _R, ro=True),
    _r("GET", "/events", events.events, _R, ro=True),
    _r("GET", "/containers/json", containers.list_containers, _R, ro=True),
    _r("POST", "/containers/create", containers.create, _O, "container.create"),
    _r("GET", f"/containers/{_REF}/json", containers.inspect, _R, ro=True),
    Route(frozenset({"GET"}), re.compile(f"^/containers/{_REF}/logs$"), partial(containers.streamed, name="logs"),
          _O, "", read_only=True, logs=True),
    _r("GET", f"/containers/{_REF}/stats", partial(containers.streamed, name="stats"), _R, ro=True),
    _r("GET", f"/containers/{_REF}/top", partial(containers.passthrough, name="top"), _R, ro=True),
    _r("GET", f"/containers/{_REF}/changes", partial(containers.passthrough, name="changes"), _O),
    _r("GET", f"/containers/{_REF}/export", partial(containers.streamed, name="export"), _O),
    _r("GET|HEAD|PUT", f"/containers/{_REF}/archive", partial(containers.streamed, name="archive"), _O,
       "container.archive"),
    _r("POST", f"/containers/{_REF}/wait", containers.wait, _R, ro=True),
    _r("POST", f"/containers/{_REF}/attach", containers.attach, _O, "container.attach"),
    _r("POST", f"/containers/{_REF}/exec", containers.exec_create, _O, "container.exec"),
    *(
        _r("POST", f"/containers/{_REF}/{name}", _act(name), _O, f"container.{name}")
        for name in ("start", "stop", "restart", "kill", "pause", "unpause", "rename", "resize", "update")
    ),
    _r("DELETE", f"/containers/{_REF}", containers.remove, _O, "container.remove"),
    _r("POST", f"/exec/{_ID}/start", containers.exec_start, _O, "exec.start"),
    _r("POST", f"/exec/{_ID}/resize", partial(containers.exec_inspect, name="resize"), _O),
    _r("GET", f"/exec/{_ID}/json", partial(containers.exec_inspect, name="json"), _R, ro=True),
    _r("GET", "/images/json", images.list_images, _R, ro=True),
    _r("POST", "/images/create", images.pull, _O, "image.pull"),
    _r("GET", f"/images/{_IMAGE}/json", images.inspect_image, _R, ro=True),
)


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        m = route.pattern.match(path)
        if m is not None and method in route.methods:
            return route, {k: v for k, v in m.groupdict().items() if v is not None}
    return None
