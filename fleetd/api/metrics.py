"""``GET /metrics`` in the Prometheus text format."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from fleetd.api.keys import FLEET
from fleetd.api.routes import PUBLIC, RouteTable

__all__ = ["routes"]

routes = RouteTable()


@routes.get("/metrics", PUBLIC, "metrics", "Prometheus metrics (text format)", "service")
async def metrics(request: web.Request) -> web.Response:
    body = await request.app[FLEET].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
