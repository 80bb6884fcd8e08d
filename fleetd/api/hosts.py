"""``/api/v1/hosts``: the inventory with each host's health."""

from __future__ import annotations

from aiohttp import web

from fleetd.api.errors import NotFound
from fleetd.api.keys import FLEET
from fleetd.api.params import get_choice, get_int
from fleetd.api.render import host_detail, host_view, json_response
from fleetd.api.routes import VIEWER, RouteTable
from fleetd.api.views import HostDetailView, HostList
from fleetd.fleet.records import HostStatus
from fleetd.ops.targets import no_such_host

__all__ = ["routes"]

routes = RouteTable()

_STATES = {s.value for s in HostStatus}


@routes.get("/api/v1/hosts", VIEWER, "hosts.list", "Every host with its health and findings (inventory order)", "fleet", query=("state", "label", "limit", "offset"), response=HostList)
async def list_hosts(request: web.Request) -> web.Response:
    q = request.query
    state_filter = get_choice(q, "state", _STATES)
    labels = q.getall("label", [])
    limit = get_int(q, "limit", None, minimum=0)
    offset = get_int(q, "offset", 0, minimum=0) or 0
    fleet = request.app[FLEET].state
    now = fleet.clock()
    # Views are built for the page only; each one's duplicate flag is looked up for its engine ID.
    page, total = fleet.hosts_page(HostStatus(state_filter) if state_filter else None, labels, offset, limit)
    hosts = [host_view(r, now, fleet.engine_twins(r.name)) for r in page]
    return json_response(HostList(hosts, total, offset, limit))


@routes.get("/api/v1/hosts/{name}", VIEWER, "hosts.get", "One host in detail", "fleet", errors=(404,), response=HostDetailView)
async def get_host(request: web.Request) -> web.Response:
    fleet = request.app[FLEET].state
    name = request.match_info["name"]
    record = fleet.get(name)
    if record is None:
        raise NotFound(no_such_host(name), code="unknown_host")
    return json_response(host_detail(fleet, record, fleet.clock()))
