"""``/api/v1/hosts``: the inventory with each host's health."""

from __future__ import annotations

from aiohttp import web

from fleetd.api.errors import NotFound
from fleetd.api.keys import FLEET
from fleetd.api.params import get_choice
from fleetd.api.render import host_detail, host_view, json_response
from fleetd.api.routes import VIEWER, RouteTable
from fleetd.api.views import HostDetailView, HostList
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import label_matches
from fleetd.ops.targets import no_such_host

__all__ = ["routes"]

routes = RouteTable()

_STATES = {s.value for s in HostStatus}


@routes.get("/api/v1/hosts", VIEWER, "hosts.list", "Every host with its health and findings", "fleet", query=("state", "label"), response=HostList)
async def list_hosts(request: web.Request) -> web.Response:
    q = request.query
    state_filter = get_choice(q, "state", _STATES)
    labels = q.getall("label", [])
    fleet = request.app[FLEET].state
    now = fleet.clock()
    dups = fleet.duplicate_engine_ids()
    hosts = [
        host_view(r, now, dups)
        for r in fleet.records()
        if (state_filter is None or r.status.value == state_filter)
        and (not labels or label_matches(dict(r.settings.labels), labels))
    ]
    return json_response(HostList(hosts, len(hosts)))


@routes.get("/api/v1/hosts/{name}", VIEWER, "hosts.get", "One host in detail", "fleet", errors=(404,), response=HostDetailView)
async def get_host(request: web.Request) -> web.Response:
    fleet = request.app[FLEET].state
    name = request.match_info["name"]
    record = fleet.get(name)
    if record is None:
        raise NotFound(no_such_host(name), code="unknown_host")
    return json_response(host_detail(fleet, record, fleet.clock()))
