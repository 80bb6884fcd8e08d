"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 description of fleetd's whole API.

Built from :data:`OPERATIONS` (one line per route) and the auth policy table (the role each route
needs), so the two cannot disagree; a unit test walks the app's router and fails on any route that
is missing here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fleetd.api.auth import Access, rule_for
from fleetd.api.render import json_response

__all__ = ["OPERATIONS", "Op", "build_spec", "routes"]

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    summary: str
    tag: str
    query: tuple[str, ...] = ()
    body: str | None = None  # "create" (an Engine create body), "batch", "tar"
    ok: int = 200
    errors: tuple[int, ...] = ()


_ENGINE = (404, 409, 502, 503, 504)
_HOST = (404, 409)

OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/healthz", "Liveness: fleetd's event loop answers", "service"),
    Op("GET", "/readyz", "Readiness: every enabled host had its first poll", "service", errors=(503,)),
    Op("GET", "/metrics", "Prometheus metrics (text format)", "service"),
    Op("GET", "/", "The web dashboard", "dashboard"),
    Op("GET", "/ui/assets/{name}", "The dashboard's files (HTML, CSS, JavaScript)", "dashboard", errors=(404,)),
    Op("GET", "/ui/{view}", "A dashboard location (the page routes itself)", "dashboard"),
    Op("GET", "/api/v1/whoami", "The caller's token name, role and the actions it may use", "service"),
    Op("GET", "/api/v1/openapi.json", "This description", "service"),
    Op("POST", "/api/v1/reload", "Re-read config and inventory (like SIGHUP)", "service", errors=(400,)),
    Op(
        "GET",
        "/api/v1/summary",
        "Fleet totals: hosts by state, containers, images, security findings",
        "fleet",
    ),
    Op("GET", "/api/v1/hosts", "Every host with its health and findings", "fleet", ("state", "label")),
    Op("GET", "/api/v1/hosts/{host}", "One host in detail", "fleet", errors=(404,)),
    Op(
        "GET",
        "/api/v1/containers",
        "Every container of the fleet, from the aggregate",
        "containers",
        ("host", "host_label", "state", "health", "stale", "label", "image", "name", "sort", "limit", "offset"),
    ),
    Op(
        "GET",
        "/api/v1/events",
        "Fleet changes as Server-Sent Events (text/event-stream; resumable, see docs/live.md)",
        "fleet",
        ("host", "label", "type", "last_event_id"),
        errors=(400, 404, 503),
    ),
    Op(
        "GET",
        "/api/v1/containers/{host}/{ref}",
        "One container from the aggregate",
        "containers",
        errors=(404,),
    ),
    Op(
        "GET",
        "/api/v1/containers/{host}/{ref}/inspect",
        "The daemon's own inspect answer for one container, verbatim",
        "containers",
        errors=_ENGINE,
    ),
    Op(
        "POST",
        "/api/v1/hosts/{host}/containers",
        "Create a container with the Engine's own create body",
        "containers",
        ("name",),
        body="create",
        ok=201,
        errors=(400, *_ENGINE),
    ),
    Op("POST", "/api/v1/containers/{host}/{ref}/start", "Start a container", "containers", errors=_ENGINE),
    Op(
        "POST",
        "/api/v1/containers/{host}/{ref}/stop",
        "Stop a container",
        "containers",
        ("t",),
        errors=_ENGINE,
    ),
    Op(
        "POST",
        "/api/v1/containers/{host}/{ref}/restart",
        "Restart a container",
        "containers",
        ("t",),
        errors=_ENGINE,
    ),
    Op(
        "POST",
        "/api/v1/containers/{host}/{ref}/kill",
        "Kill a container",
        "containers",
        ("signal",),
        errors=_ENGINE,
    ),
    Op(
        "DELETE",
        "/api/v1/containers/{host}/{ref}",
        "Remove a container",
        "containers",
        ("force", "v"),
        errors=_ENGINE,
    ),
    Op(
        "GET",
        "/api/v1/containers/{host}/{ref}/logs",
        "A container's log lines, stdout and stderr told apart; with follow=1 an NDJSON stream "
        "until the container stops (role: container_logs.role)",
        "containers",
        ("tail", "since", "timestamps", "follow"),
        errors=_ENGINE,
    ),
    Op(
        "GET",
        "/api/v1/logs",
        "The merged logs of every matching running container across hosts, as NDJSON in timestamp "
        "order; with follow=1 containers that start later join (role: container_logs.role)",
        "containers",
        ("label", "host", "name", "tail", "since", "follow"),
        errors=(400, 404, 503),
    ),
    Op(
        "POST",
        "/api/v1/actions",
        "One action on every container a selector matches, across hosts",
        "containers",
        body="batch",
        errors=(400,),
    ),
    Op(
        "GET",
        "/api/v1/images",
        "Every image of the fleet once, with the hosts having it",
        "images",
        ("host", "reference"),
    ),
    Op(
        "GET",
        "/api/v1/hosts/{host}/images",
        "One host's images, from the aggregate",
        "images",
        ("reference",),
        errors=(404,),
    ),
    Op(
        "GET",
        "/api/v1/images/search",
        "Registry search, run by one host's daemon",
        "images",
        ("term", "search_host", "limit"),
        errors=(400, *_ENGINE),
    ),
    Op(
        "POST",
        "/api/v1/hosts/{host}/images/pull",
        "Pull an image onto a host",
        "images",
        ("image",),
        errors=(400, *_ENGINE),
    ),
    Op(
        "POST",
        "/api/v1/hosts/{host}/images/load",
        "Load an image tarball (docker save) onto a host, streamed",
        "images",
        body="tar",
        errors=(400, *_ENGINE),
    ),
    Op(
        "GET",
        "/api/v1/snapshots",
        "Stored snapshots, newest first",
        "snapshots",
        ("since", "until", "before", "limit", "offset"),
    ),
    Op("POST", "/api/v1/snapshots", "Take a snapshot now", "snapshots", ok=201, errors=(503,)),
    Op("GET", "/api/v1/snapshots/latest", "The newest snapshot", "snapshots", ("format",), errors=(404,)),
    Op(
        "GET",
        "/api/v1/snapshots/{id}",
        "One snapshot (json, yaml or csv)",
        "snapshots",
        ("format",),
        errors=(404,),
    ),
    Op(
        "GET",
        "/api/v1/snapshots/{id}/diff",
        "Changes between two snapshots",
        "snapshots",
        ("against",),
        errors=(404,),
    ),
    Op("DELETE", "/api/v1/snapshots/{id}", "Delete a snapshot", "snapshots", errors=(404,)),
    Op("POST", "/api/v1/snapshots/prune", "Apply snapshot retention now", "snapshots", ("last", "max_age")),
    Op(
        "GET",
        "/api/v1/audit",
        "The audit log of mutating calls, newest first",
        "audit",
        ("since", "until", "actor", "audit_host", "action", "limit", "offset"),
        errors=(400, 503),
    ),
)

_S, _I, _B = {"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "boolean"}
_ARRAY = {"type": "array", "items": _S}
#: Query parameters: (schema, description). Keys after "_" are aliases for a different meaning.
PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "host": (_ARRAY, "only these hosts (repeatable)"),
    "host_label": (_ARRAY, "only hosts carrying this label, key or key=value; all must match (repeatable)"),
    "search_host": (_S, "the host whose daemon searches (default: the first host that is up)"),
    "audit_host": (_S, "entries that targeted this host"),
    "state": (_S, "only this state"),
    "health": (_S, "healthy, unhealthy, starting or none"),
    "stale": (_B, "only stale (true) or fresh (false) data"),
    "label": (_ARRAY, "key or key=value; all must match (repeatable)"),
    "image": (_S, "an image reference"),
    "name": (_S, "a container name"),
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
    "since": (_S, "Unix seconds, an RFC 3339 time, or (logs) a duration back from now such as 10m"),
    "until": (_S, "Unix seconds or an RFC 3339 time"),
    "timestamps": (_B, "each line with its time"),
    "reference": (_S, "name:tag, a repository, an id (prefix) or a digest"),
    "term": (_S, "what to search for"),
    "format": (_S, "json (default), yaml or csv"),
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

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": _S, "message": _S, "host": _S},
                "required": ["code", "message"],
            }
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["action", "selector"],
        "additionalProperties": False,
        "properties": {
            "action": {"enum": ["start", "stop", "restart", "remove"]},
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "description": "fields combine with AND; name is exact or a glob, never a substring",
                "properties": {"host": _ARRAY, "label": _ARRAY, "name": _S, "state": _S},
            },
            "dry_run": _B,
            "force": _B,
            "t": _I,
            "allow_empty": _B,
        },
    },
}

_REASONS = {
    400: "bad request",
    401: "missing or wrong token",
    403: "role too low, or operations disabled",
    404: "not found",
    409: "conflict",
    429: "too many failed authentications",
    502: "the daemon's answer was unusable",
    503: "unavailable",
    504: "the daemon timed out",
}
_VAR = re.compile(r"\{([^}]+)\}")


def _operation(op: Op) -> dict[str, Any]:
    rule = rule_for(op.method, op.path)
    access = rule.access if rule is not None else Access.ADMIN
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
    if access is not Access.PUBLIC:
        errors |= {401, 403, 429}
    responses: dict[str, Any] = {str(op.ok): {"description": "success"}}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": _REASONS.get(status, "error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
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


def build_spec(version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleetd",
            "version": version,
            "description": "One REST view of many Docker Engine APIs, and operations across them.",
        },
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_spec())
