"""``/api/v1/containers``: every container of the fleet, from the aggregate."""

from __future__ import annotations

from aiohttp import web

from fleetd.api.errors import BadRequest, NotFound
from fleetd.api.keys import STATE
from fleetd.api.params import check_known, get_bool, get_choice, get_int, get_one
from fleetd.api.render import json_response
from fleetd.fleet.state import AmbiguousContainer, ContainerQuery

__all__ = ["routes"]

routes = web.RouteTableDef()

CONTAINER_STATES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}
HEALTH_STATES = {"healthy", "unhealthy", "starting", "none"}
_PARAMS = {"host", "state", "health", "stale", "label", "image", "name", "limit", "offset"}


@routes.get("/api/v1/containers")
async def list_containers(request: web.Request) -> web.Response:
    q = request.query
    check_known(q, _PARAMS)
    fleet = request.app[STATE]
    hosts = tuple(q.getall("host", []))
    for h in hosts:
        if h not in fleet:
            raise NotFound(f"no host named {h!r} in the inventory", code="unknown_host")
    labels = tuple(q.getall("label", []))
    if any(not sel.partition("=")[0] for sel in labels):
        raise BadRequest("parameter 'label' must be 'key' or 'key=value'", code="bad_parameter")
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
    found = fleet.containers(query)
    page = found[offset : offset + limit if limit is not None else None]
    return json_response({"containers": page, "total": len(found), "offset": offset, "limit": limit})


@routes.get("/api/v1/containers/{host}/{ref}")
async def get_container(request: web.Request) -> web.Response:
    check_known(request.query, ())
    fleet = request.app[STATE]
    host, ref = request.match_info["host"], request.match_info["ref"]
    if host not in fleet:
        raise NotFound(f"no host named {host!r} in the inventory", code="unknown_host")
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
