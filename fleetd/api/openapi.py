"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 description of fleetd's whole API.

Built from the route table (fleetd/api/routes.py): each route's summary, tag, query parameters,
body, answers and role are declared once, with its handler, so the router, the auth policy and this
description cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp import web

from fleetd.api.batch import BatchRequest
from fleetd.api.errors import ErrorAnswer
from fleetd.api.render import json_response
from fleetd.api.routes import ROUTES, VIEWER, Access, Route, RouteTable, canonical
from fleetd.fleet.match import HEALTH_STATES
from fleetd.snapshot.export import FORMATS
from fleetd.util.version import fleetd_version

__all__ = ["PARAMS", "build_spec", "routes"]

routes = RouteTable()


_S, _I, _B = {"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "boolean"}
_ARRAY = {"type": "array", "items": _S}
#: Query parameters: (schema, description). Keys after "_" are aliases for a different meaning.
PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "host": (_ARRAY, "only these hosts (repeatable)"),
    "host_label": (_ARRAY, "only hosts carrying this label, key or key=value; all must match (repeatable)"),
    "search_host": (_S, "the host whose daemon searches (default: the first host that is up)"),
    "audit_host": (_S, "entries that targeted this host"),
    "state": (_S, "only this state"),
    "health": ({"enum": sorted(HEALTH_STATES)}, "healthy, unhealthy, starting or none"),
    "stale": (_B, "only stale (true) or fresh (false) data"),
    "label": (_ARRAY, "key or key=value; all must match (repeatable)"),
    "image": (_S, "an image reference"),
    "name": (_S, "a container name, exactly or as a shell glob (web-*, *web*, db-?); never a bare substring"),
    "sort": (_S, "order by host, name, image, state, health, status or created; '-' first for descending"),
    "limit": (_I, "at most this many"),
    "offset": (_I, "skip this many"),
    "type": (_ARRAY, "event types: container, host, or exact (container.changed, ...) (repeatable)"),
    "last_event_id": (_S, "resume after this event id (the Last-Event-ID header wins)"),
    "t": (_I, "seconds to wait before killing"),
    "signal": (_S, "signal name or number (default SIGKILL)"),
    "force": (_B, "remove a running container too"),
    "v": (_B, "remove its anonymous volumes too"),
    "tail": (
        {"type": ["integer", "string"]},
        "the last N lines (default 1000, at most 10000), or all (streams: follow=1 or /api/v1/logs)",
    ),
    "follow": (_B, "stream NDJSON lines as they come, until the client leaves or the container stops"),
    "since": (_S, "Unix seconds, an RFC 3339 time, or a duration back from now such as 10m"),
    "until": (_S, "Unix seconds, an RFC 3339 time, or a duration back from now such as 10m"),
    "timestamps": (_B, "each line with its time"),
    "reference": (_S, "name:tag, a repository, an id (prefix) or a digest"),
    "term": (_S, "what to search for"),
    "format": ({"enum": sorted(FORMATS)}, "json (default), yaml or csv"),
    "against": (_I, "the snapshot to compare with (default: the one before)"),
    "actor": (_S, "the token name (or anonymous)"),
    "before": (_I, "only snapshots with a smaller id (the next page)"),
    "last": (_I, "keep at most this many snapshots"),
    "max_age": (_S, "delete snapshots older than this duration, e.g. 90d"),
    "action": (_S, "e.g. container.stop, batch"),
}

_BODIES: dict[str, dict[str, Any]] = {
    "create": {
        "application/json": {"schema": {"type": "object", "description": "Engine API ContainerCreate body"}}
    },
    "batch": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}},
    "tar": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
}

#: Bodies and answers described by the msgspec types that decode or encode them.
_DOCUMENTED: tuple[type, ...] = (BatchRequest, ErrorAnswer)

_REASONS = {
    400: "bad request: a parameter, path segment or body fleetd refuses (the message names it)",
    401: "missing or wrong token",
    403: "role too low, or operations disabled",
    404: "not found",
    409: "conflict",
    429: "too many failed authentications",
    502: "the daemon's answer was unusable",
    503: "unavailable",
    504: "the daemon timed out",
}
_OBJECT: dict[str, Any] = {"schema": {"type": "object"}}
_ANY: dict[str, Any] = {"schema": {}}
#: What a success answer carries, by the route's action; every other route answers a JSON object.
_SUCCESS: dict[str, dict[str, Any]] = {
    "metrics": {"text/plain": _ANY},
    "ui": {"text/html": _ANY, "text/css": _ANY, "text/javascript": _ANY, "image/svg+xml": _ANY},
    "events.stream": {"text/event-stream": _ANY},
    "container.logs": {"application/json": _OBJECT, "application/x-ndjson": _ANY},
    "logs.merged": {"application/x-ndjson": _ANY},
    "snapshots.get": {"application/json": _OBJECT, "application/yaml": _ANY, "text/csv": _ANY},
    "snapshots.latest": {"application/json": _OBJECT, "application/yaml": _ANY, "text/csv": _ANY},
}
_READINESS = {
    "type": "object",
    "required": ["ready"],
    "properties": {"ready": _B, "pending": _ARRAY},
}
_VAR = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _operation(op: Route) -> dict[str, Any]:
    access = op.access
    params: list[dict[str, Any]] = [
        {"name": v, "in": "path", "required": True, "schema": _S} for v in _VAR.findall(op.path)
    ]
    for key in op.query:
        schema, text = PARAMS[key]
        name = key.rpartition("_")[2] if key.endswith("_host") else key
        params.append(
            {
                "name": name,
                "in": "query",
                "required": key in ("term", "image"),
                "schema": schema,
                "description": text,
            }
        )
    errors = set(op.errors)
    if op.checks_query:  # an undeclared or malformed parameter, a path segment out of range
        errors.add(400)
    if access is not Access.PUBLIC:
        errors |= {401, 403, 429}
    responses: dict[str, Any] = {str(op.ok): {"description": "success"}}
    if op.response is not None:
        ref = {"$ref": f"#/components/schemas/{op.response.__name__}"}
        responses[str(op.ok)]["content"] = {"application/json": {"schema": ref}}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": _REASONS.get(status, "error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}},
        }
    out: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower()).strip('_')}",
        "parameters": params,
        "responses": responses,
        "x-fleetd-role": access.name.lower(),
    }
    out["security"] = [] if access is Access.PUBLIC else [{"bearer": []}]
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": _BODIES[op.body]}
    return out


def build_spec(routes: Iterable[Route], version: str | None = None) -> dict[str, Any]:
    """The description of ``routes`` (the app's route table: ``app[ROUTES].routes``)."""
    paths: dict[str, dict[str, Any]] = {}
    routes = list(routes)
    # Answer schemas come from the same msgspec types the handlers encode.
    _, derived = msgspec.json.schema_components(
        sorted({op.response for op in routes if op.response is not None} | set(_DOCUMENTED), key=lambda t: t.__name__),
        ref_template="#/components/schemas/{name}",
    )
    for op in routes:
        path = canonical(op.path)  # "/ui/assets/{name:.+}" -> "/ui/assets/{name}"
        paths.setdefault(path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleetd",
            "version": version or fleetd_version(),
            "description": "One REST view of many Docker Engine APIs, and operations across them.",
        },
        "paths": paths,
        "components": {
            "schemas": derived,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@routes.get("/api/v1/openapi.json", VIEWER, "openapi", "This description", "service")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_spec(request.app[ROUTES].routes))
