"""JSON rendering of fleet records for the API (one encoder, RFC 3339 times)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from fleetd.api.views import HostDetailView, HostView
from fleetd.fleet.records import HostRecord
from fleetd.fleet.state import FleetState

__all__ = ["host_detail", "host_view", "json_response"]

_encoder = msgspec.json.Encoder()


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_encoder.encode(data), status=status, content_type="application/json", headers=headers
    )


def host_view(r: HostRecord, now: float, duplicates: dict[str, list[str]]) -> HostView:
    return HostView.of(r, now, duplicates)


def host_detail(state: FleetState, r: HostRecord, now: float) -> HostDetailView:
    return HostDetailView.detail(r, now, state.engine_twins(r.name))
