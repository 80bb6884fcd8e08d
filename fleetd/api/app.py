"""The aiohttp application factory. Tests build their own app with ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from fleetd.api import (
    containers,
    events,
    hosts,
    inspect,
    operations,
    snapshots,
    summary,
    ui,
    webhooks,
    whoami,
)
from fleetd.api import metrics as metrics_routes
from fleetd.api import reload as reload_routes
from fleetd.api.errors import ApiError
from fleetd.api.keys import CONFIG, CONNECTIONS, FEED, METRICS, POLLER, STATE, ConfigHolder
from fleetd.api.render import json_response
from fleetd.config.model import Settings
from fleetd.dockerapi import EngineConnections
from fleetd.fleet.feed import FleetFeed
from fleetd.fleet.poller import Poller
from fleetd.fleet.state import FleetState
from fleetd.metrics import FleetMetrics

__all__ = ["create_app", "keepalive_for"]

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


def keepalive_for(settings: Settings) -> float:
    """Idle connections must outlive the longest gap between two polls of a host."""
    longest = max((h.interval + h.timeout for h in settings.hosts if h.enabled), default=15.0)
    return longest + 30.0


async def _fleet_ctx(app: web.Application) -> AsyncIterator[None]:
    poller = app[POLLER]
    await poller.start(app[CONFIG].current.hosts)
    yield
    await poller.aclose()
    await app[CONNECTIONS].aclose()


def create_app(
    settings: Settings, *, state: FleetState | None = None, registry: CollectorRegistry | None = None
) -> web.Application:
    config = ConfigHolder(settings)
    fleet = state if state is not None else FleetState()
    metrics = FleetMetrics(fleet, config, registry)
    app = web.Application(middlewares=[metrics.middleware(), error_middleware])
    app[CONFIG] = config
    app[STATE] = fleet
    app[METRICS] = metrics
    app[CONNECTIONS] = EngineConnections(keepalive=keepalive_for(settings))
    app[POLLER] = Poller(fleet, settings.poll, app[CONNECTIONS], observer=metrics)
    app[FEED] = FleetFeed(size=settings.events.buffer, max_age=settings.events.max_age)
    app.cleanup_ctx.append(_fleet_ctx)
    app.add_routes(hosts.routes)
    app.add_routes(containers.routes)
    app.add_routes(summary.routes)
    app.add_routes(metrics_routes.routes)
    app.add_routes(reload_routes.routes)
    app.add_routes(whoami.routes)
    app.add_routes(inspect.routes)
    ui.install(app)  # the dashboard at / and /ui/...
    operations.install(app)  # audit + auth middlewares (after error_middleware), operation routes
    snapshots.install(app, settings)  # database + snapshot service (first cleanup ctx), routes
    events.install(app, events.SseSettings.of(settings.events))  # GET /api/v1/events, X-Fleet-Event-Id
    webhooks.install(app)  # notify: receivers get a POST per matching fleet event
    return app
