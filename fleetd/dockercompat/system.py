"""``/_ping``, ``/version`` and ``/info`` for the fleet as one engine (``/events``: :mod:`.events`)."""

from __future__ import annotations

from aiohttp import web

from fleetd.dockercompat.context import Call
from fleetd.dockercompat.reads import fleet_info, fleet_version
from fleetd.dockercompat.responses import json_ok

__all__ = ["info", "ping", "version"]


async def ping(call: Call) -> web.StreamResponse:
    resp = web.Response(
        body=b"" if call.request.method == "HEAD" else b"OK",
        headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"},
    )
    resp.headers["Content-Type"] = "text/plain; charset=utf-8"
    return resp


async def version(call: Call) -> web.StreamResponse:
    return json_ok(fleet_version(call.fleet, call.svc.advertised()))


async def info(call: Call) -> web.StreamResponse:
    await call.fleet.settled()
    return json_ok(fleet_info(call.fleet))
