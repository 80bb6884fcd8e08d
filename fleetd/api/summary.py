"""``/api/v1/summary``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

from aiohttp import web

from fleetd.api.keys import FLEET
from fleetd.api.render import json_response
from fleetd.api.routes import PUBLIC, VIEWER, RouteTable
from fleetd.api.views import SummaryView

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/api/v1/summary", VIEWER, "summary", "Fleet totals: hosts by state, containers, images, security findings", "fleet", response=SummaryView)
async def summary(request: web.Request) -> web.Response:
    fleet = request.app[FLEET].state
    now = fleet.clock()
    return json_response(SummaryView.of(fleet.summary(now), fleet.security_counts()))


@routes.get("/healthz", PUBLIC, "health.live", "Liveness: fleetd's event loop answers", "service")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz", PUBLIC, "health.ready", "Readiness: every enabled host had its first poll", "service", errors=(503,))
async def readyz(request: web.Request) -> web.Response:
    fleet = request.app[FLEET].state
    if fleet.is_ready():
        return json_response({"ready": True})
    pending = sorted(r.name for r in fleet.records() if not r.first_poll_done)
    return json_response({"ready": False, "pending": pending}, status=503)
