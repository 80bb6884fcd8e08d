"""``POST /api/v1/reload`` (admin): the same reload as SIGHUP, with the outcome in the answer."""

from __future__ import annotations

from aiohttp import web

from fleetd.api.audit import audit_note
from fleetd.api.errors import BadRequest
from fleetd.api.keys import FLEET
from fleetd.api.render import json_response
from fleetd.api.routes import ADMIN, RouteTable
from fleetd.config.live import ReloadFailed

__all__ = ["routes"]

routes = RouteTable()


@routes.post("/api/v1/reload", ADMIN, "config.reload", "Re-read config and inventory (like SIGHUP)", "service", errors=(400,))
async def reload(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    path = fleet.settings.path
    note = audit_note(request)
    note.detail["config"] = str(path)
    try:
        report = await fleet.reload(path)
    except ReloadFailed as exc:
        note.detail["problems"] = exc.problems
        raise BadRequest(
            "the new configuration was rejected; the previous one stays in force",
            code="invalid_config",
            details={"problems": exc.problems},
        ) from None
    return json_response(
        {
            "reloaded": True,
            "config": str(path),
            "added": report.added,
            "removed": report.removed,
            "reconnected": report.reconnected,
            "updated": report.updated,
            "unchanged": len(report.unchanged),
        }
    )
