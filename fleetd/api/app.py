"""The HTTP adapter over a running :class:`~fleetd.runtime.Fleet`: middlewares and routes, nothing else.

    async with Fleet(settings) as fleet:
        app = create_app(fleet)

Middlewares, outermost first: metrics (every request, by route template), errors (every failure as
JSON), audit (mutating calls; refused ones too), auth (the one place that decides who may call what).
On shutdown, before aiohttp waits for handlers, operations in flight get the grace period to finish
and be audited; the fleet itself is closed by whoever opened it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from fleetd.api import (
    actions,
    batch,
    containers,
    events,
    hosts,
    images,
    inspect,
    logs,
    openapi,
    snapshots,
    summary,
    ui,
    whoami,
)
from fleetd.api import audit as audit_api
from fleetd.api import metrics as metrics_routes
from fleetd.api import reload as reload_routes
from fleetd.api.auth import AUTH, AuthGuard, auth_middleware
from fleetd.api.errors import ApiError
from fleetd.api.keys import FLEET
from fleetd.api.render import json_response
from fleetd.api.routes import RouteIndex, register
from fleetd.metrics import FleetMetrics
from fleetd.runtime import Fleet

__all__ = ["ROUTE_TABLES", "create_app", "route_index"]

log = structlog.get_logger("fleetd.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        return json_response({"error": {"code": code, "message": message}}, status=exc.status)
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        return json_response(
            {"error": {"code": "internal_error", "message": "internal error; see fleetd's log"}}, status=500
        )


def metrics_middleware(metrics: FleetMetrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    requests, latency = metrics.api_requests, metrics.api_latency

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info
            # The route template, never the raw path: bounded label cardinality.
            route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
            requests.labels(request.method, route, str(status)).inc()
            latency.labels(request.method, route).observe(time.perf_counter() - started)

    return middleware


async def _drain(app: web.Application) -> None:
    await app[FLEET].drain()


#: Every module's routes, in the order the router matches them.
ROUTE_TABLES = (
    hosts.routes,
    containers.routes,
    summary.routes,
    metrics_routes.routes,
    reload_routes.routes,
    whoami.routes,
    inspect.routes,
    ui.routes,
    actions.routes,
    images.routes,
    batch.routes,
    audit_api.routes,
    openapi.routes,
    logs.routes,
    snapshots.routes,
    events.routes,
)


def route_index() -> RouteIndex:
    """The whole route table without an app (for tests and tools)."""
    return RouteIndex(r for table in ROUTE_TABLES for r in table)


def create_app(fleet: Fleet) -> web.Application:
    app = web.Application(
        middlewares=[
            metrics_middleware(fleet.metrics),
            error_middleware,
            audit_api.audit_middleware,
            auth_middleware,
        ]
    )
    app[FLEET] = fleet
    app[AUTH] = AuthGuard(fleet.auth_failures)
    app[batch.BATCHES] = batch.BatchSlots()
    app.on_shutdown.append(_drain)
    # The one route table: router, auth policy, OpenAPI and query checks all come from it.
    register(app, ROUTE_TABLES)
    ui.install(app)  # the dashboard's files, loaded at start-up
    logs.install(app)  # container log streams, closed at shutdown
    events.install(app, events.SseSettings.of(fleet.settings.events))  # SSE hub, X-Fleet-Event-Id
    return app
