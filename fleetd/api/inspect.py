"""``GET /api/v1/containers/{host}/{ref}/inspect``: the daemon's own answer, for a person to read."""

from __future__ import annotations

from aiohttp import web

from fleetd.api.actions import host_client
from fleetd.api.errors import BadRequest, engine_error
from fleetd.api.routes import OPERATOR, RouteTable
from fleetd.dockerapi import DockerError
from fleetd.ops.targets import InvalidReference, check_ref

__all__ = ["routes"]

routes = RouteTable()

INSPECT_TIMEOUT = 15.0


@routes.get("/api/v1/containers/{host}/{ref}/inspect", OPERATOR, "container.inspect", "The daemon's own inspect answer for one container, verbatim", "containers", errors=(404, 409, 502, 503, 504))
async def inspect_container(request: web.Request) -> web.Response:
    host = request.match_info["host"]
    try:
        ref = check_ref(request.match_info["ref"])
    except InvalidReference as exc:
        raise BadRequest(str(exc), code="bad_reference") from None
    client = host_client(request, host)
    try:
        raw = await client.containers.inspect_raw(ref, timeout=INSPECT_TIMEOUT)
    except DockerError as exc:
        raise engine_error(host, exc) from None
    return web.Response(body=bytes(raw), content_type="application/json")
