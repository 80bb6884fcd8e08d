"""``/api/v1/containers``: every container of the fleet, from the aggregate."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from fleetd.api.errors import BadRequest, NotFound
from fleetd.api.keys import FLEET
from fleetd.api.params import get_bool, get_choice, get_int, get_one
from fleetd.api.render import json_response
from fleetd.api.routes import VIEWER, RouteTable
from fleetd.api.views import ContainerPage
from fleetd.fleet.match import CONTAINER_STATES, HEALTH_STATES, label_matches
from fleetd.fleet.queries import AmbiguousContainer, ContainerQuery
from fleetd.fleet.records import ContainerRecord
from fleetd.ops.targets import no_such_host

__all__ = ["routes"]

routes = RouteTable()

_PARAMS = {"host", "state", "health", "stale", "label", "image", "name", "host_label", "sort", "limit", "offset"}
#: ?sort= keys; ties keep the default order (host, then name), so pages are stable.
_SORT_KEYS: dict[str, Callable[[ContainerRecord], str]] = {
    "host": lambda c: c.host,
    "name": lambda c: c.name,
    "image": lambda c: c.image,
    "state": lambda c: c.state,
    "health": lambda c: c.health,
    "status": lambda c: c.status,
    "created": lambda c: c.created or "",
}
_SORTS = set(_SORT_KEYS) | {f"-{k}" for k in _SORT_KEYS}


@routes.get("/api/v1/containers", VIEWER, "containers.list", "Every container of the fleet, from the aggregate", "containers", query=("host", "host_label", "state", "health", "stale", "label", "image", "name", "sort", "limit", "offset"), errors=(404,), response=ContainerPage)
async def list_containers(request: web.Request) -> web.Response:
    q = request.query
    fleet = request.app[FLEET].state
    hosts = tuple(q.getall("host", []))
    for h in hosts:
        if h not in fleet:
            raise NotFound(no_such_host(h), code="unknown_host")
    labels = tuple(q.getall("label", []))
    host_labels = q.getall("host_label", [])
    for name, given in (("label", labels), ("host_label", host_labels)):
        if any(not sel.partition("=")[0] for sel in given):
            raise BadRequest(f"parameter {name!r} must be 'key' or 'key=value'", code="bad_parameter")
    if host_labels:  # hosts carrying every host label (and among ?host= when both are given)
        hosts = tuple(
            r.name
            for r in fleet.records()
            if (not hosts or r.name in hosts) and label_matches(dict(r.settings.labels), host_labels)
        ) or ("",)
    query = ContainerQuery(
        hosts=hosts,
        state=get_choice(q, "state", CONTAINER_STATES),
        health=get_choice(q, "health", HEALTH_STATES),
        stale=get_bool(q, "stale"),
        labels=labels,
        image=get_one(q, "image") or None,
        name=get_one(q, "name") or None,
    )
    limit = get_int(q, "limit", None, minimum=0)
    offset = get_int(q, "offset", 0, minimum=0) or 0
    sort = get_choice(q, "sort", _SORTS)
    if sort is None:  # the fleet order: the index gives the page and the total without the rest
        page, total = fleet.containers_page(query, offset, limit)
    else:
        found = fleet.containers(query)
        found.sort(key=_SORT_KEYS[sort.lstrip("-")], reverse=sort.startswith("-"))
        page, total = found[offset : offset + limit if limit is not None else None], len(found)
    return json_response({"containers": page, "total": total, "offset": offset, "limit": limit})


@routes.get("/api/v1/containers/{host}/{ref}", VIEWER, "containers.get", "One container from the aggregate", "containers", errors=(400, 404), response=ContainerRecord)
async def get_container(request: web.Request) -> web.Response:
    fleet = request.app[FLEET].state
    host, ref = request.match_info["host"], request.match_info["ref"]
    if host not in fleet:
        raise NotFound(no_such_host(host), code="unknown_host")
    try:
        found = fleet.find_container(host, ref)
    except AmbiguousContainer as exc:
        raise BadRequest(
            f"{exc}; give more of the id",
            code="ambiguous_reference",
            details={"matches": exc.matches},
        ) from None
    if found is None:
        raise NotFound(f"no container {ref!r} on host {host!r}", code="unknown_container")
    return json_response(found)
