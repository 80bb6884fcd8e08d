"""JSON rendering of fleet records for the API (one encoder, RFC 3339 times)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from fleetd.fleet.records import HostRecord
from fleetd.fleet.state import FleetState
from fleetd.util.timefmt import rfc3339

__all__ = ["host_detail", "host_view", "json_response"]

_encoder = msgspec.json.Encoder()


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_encoder.encode(data), status=status, content_type="application/json", headers=headers
    )


def host_view(r: HostRecord, now: float, duplicates: dict[str, list[str]]) -> dict[str, Any]:
    facts = r.facts
    engine_id = facts.engine_id if facts else None
    dup_with = [n for n in duplicates.get(engine_id or "", []) if n != r.name]
    s = r.settings
    return {
        "name": r.name,
        "url": s.url,
        "labels": dict(s.labels),
        "enabled": s.enabled,
        "state": r.status.value,
        "stale": r.is_stale(now),
        "last_seen": rfc3339(r.last_seen),
        "last_attempt": rfc3339(r.last_attempt),
        "last_error": r.last_error,
        "state_since": rfc3339(r.changed_at),
        "consecutive_failures": r.consecutive_failures,
        "last_poll_duration": round(r.poll_duration, 6) if r.poll_duration is not None else None,
        "engine_id": engine_id,
        "server_version": facts.server_version if facts else None,
        "api_version": facts.api_version if facts else None,
        "containers": len(r.containers),
        "running": r.running,
        "duplicate_engine_id": bool(dup_with),
        "duplicate_of": dup_with,
        "interval": s.interval,
        "timeout": s.timeout,
        "findings": r.findings,
        "insecure_transport": r.insecure_transport,
    }


def host_detail(state: FleetState, r: HostRecord, now: float) -> dict[str, Any]:
    view = host_view(r, now, state.duplicate_engine_ids())
    view["engine"] = r.facts
    view["images"] = len(r.images) if r.images is not None else None
    view["images_seen"] = rfc3339(r.images_seen)
    view["info"] = r.info_raw
    return view
