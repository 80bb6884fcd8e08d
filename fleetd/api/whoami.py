"""``GET /api/v1/whoami``: who the caller is and what it may do, so the dashboard shows only usable buttons.

Without a token it answers for an anonymous caller (never 401), saying whether reads are open to it;
with a token it goes through the same checks as every other route.
"""

from __future__ import annotations

from aiohttp import web

from fleetd.api.auth import PRINCIPAL
from fleetd.api.keys import FLEET
from fleetd.api.render import json_response
from fleetd.api.routes import ROLE_ACCESS, ROUTES, VIEWER, Access, RouteIndex, RouteTable
from fleetd.config.exposure import anonymous_reads
from fleetd.config.model import Settings

__all__ = ["allowed_actions", "routes"]

routes = RouteTable()

_LOGS = "/api/v1/containers/{host}/{ref}/logs"


def allowed_actions(index: RouteIndex, access: Access, settings: Settings) -> list[str]:
    """The audit names of every route this access level may call (from the one policy table)."""
    if not settings.auth.tokens:  # operations are disabled without tokens
        access = min(access, Access.VIEWER)
    return sorted(
        {r.action for r in index.routes if Access.PUBLIC < r.rule.needed(settings) <= access}
    )


def _features(app: web.Application) -> dict[str, bool]:
    """What this fleetd serves, so the page never probes for it (a 404 is noise in every console)."""
    canonical = {r.canonical for r in app.router.resources()}
    follow = any(r.path == _LOGS and "follow" in r.query for r in app[ROUTES].routes)
    return {"events": "/api/v1/events" in canonical, "logs_follow": follow}


@routes.get("/api/v1/whoami", VIEWER, "whoami", "The caller's token name, role and the actions it may use", "service", probe=True)
async def whoami(request: web.Request) -> web.Response:
    settings = request.app[FLEET].settings
    principal = request.get(PRINCIPAL)
    role = principal.role if principal is not None else None
    reads = role is not None or anonymous_reads(settings)
    access = ROLE_ACCESS[role] if role is not None else (Access.VIEWER if reads else Access.PUBLIC)
    enabled = bool(settings.auth.tokens)
    intervals = [h.interval for h in settings.hosts if h.enabled] or [settings.poll.interval]
    return json_response(
        {
            "name": principal.name if principal is not None else "anonymous",
            "role": role,
            "auth": enabled,
            "reads": reads,  # False: sign in to see anything
            "allowed": allowed_actions(request.app[ROUTES], access, settings),
            "features": _features(request.app),
            # How often a page without the event stream re-reads: never faster than fleetd polls.
            "refresh": min(max(min(intervals), 0.5), 10.0),
        }
    )
