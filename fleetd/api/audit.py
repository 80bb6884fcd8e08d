"""Auditing the API: a middleware that records every mutating call, and ``GET /api/v1/audit``.

The middleware runs each mutating call as a task owned by the :class:`~fleetd.ops.audit.Auditor`,
so a call whose request is cancelled (client gone, shutdown) still finishes and is audited;
handlers add what they acted on through :func:`audit_note`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fleetd.api.auth import PRINCIPAL, RULE, SAFE_METHODS, client_address
from fleetd.api.errors import ApiError, ServiceUnavailable
from fleetd.api.keys import FLEET
from fleetd.api.params import get_int, get_one, get_time
from fleetd.api.render import json_response
from fleetd.api.routes import ADMIN, RouteTable
from fleetd.ops.audit import AuditUnavailable
from fleetd.store.audit import AuditEntry, AuditQuery, AuditTarget
from fleetd.util.timefmt import rfc3339

__all__ = ["AUDIT_NOTE", "AuditNote", "audit_middleware", "audit_note", "routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class AuditNote:
    """What a handler tells the audit log about its call."""

    targets: list[AuditTarget] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None  # None: derived from the status

    def target(self, host: str, id: str | None = None, name: str | None = None) -> None:
        self.targets.append(AuditTarget(host=host, id=id, name=name))


AUDIT_NOTE = web.RequestKey("audit_note", AuditNote)


def audit_note(request: web.Request) -> AuditNote:
    """The request's note; a throwaway one for calls that are not audited (reads)."""
    note = request.get(AUDIT_NOTE)
    return note if note is not None else AuditNote()


def _outcome(status: int) -> str:
    if status in (401, 403):
        return "denied"
    return "ok" if status < 400 else "failed"


async def _audited(request: web.Request, handler: Handler, note: AuditNote) -> web.StreamResponse:
    started = time.time()
    status = 500
    error: str | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as exc:
        status, error = exc.status, exc.message
        raise
    except web.HTTPException as exc:
        status, error = exc.status, exc.reason
        raise
    except asyncio.CancelledError:
        note.outcome, error = "cancelled", "cancelled at shutdown before it finished"
        raise
    finally:
        await _record(request, note, started, status, error)


async def _record(
    request: web.Request, note: AuditNote, started: float, status: int, error: str | None
) -> None:
    auditor = request.app[FLEET].auditor
    outcome = note.outcome or _outcome(status)
    client = client_address(request)
    if status == 429 or (outcome == "denied" and not auditor.admit_denied(client)):
        return  # a flood of refusals is not worth a row each
    principal = request.get(PRINCIPAL)
    rule = request.get(RULE)
    if not note.targets and "host" in request.match_info:  # refused before the handler named it
        note.target(request.match_info["host"], name=request.match_info.get("ref"))
    detail = dict(note.detail)
    if error is not None:
        detail.setdefault("error", error)
    detail["duration"] = round(time.time() - started, 3)
    entry = AuditEntry(
        ts=started,
        actor=principal.name if principal is not None else "anonymous",
        role=principal.role if principal is not None else None,
        action=rule.action if rule is not None else f"{request.method} {request.path}",
        method=request.method,
        path=request.path,
        targets=note.targets,
        outcome=outcome,
        status=status,
        detail=detail,
        client=client,
    )
    await auditor.record(entry)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS or request.match_info.http_exception is not None:
        return await handler(request)
    note = AuditNote()
    request[AUDIT_NOTE] = note
    task = request.app[FLEET].auditor.start(_audited(request, handler, note))
    return await asyncio.shield(task)


# -- GET /api/v1/audit ---------------------------------------------------------------------------

routes = RouteTable()

_PARAMS = {"since", "until", "actor", "host", "action", "limit", "offset"}


def _entry_view(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "time": rfc3339(e.ts),
        "actor": e.actor,
        "role": e.role,
        "action": e.action,
        "method": e.method,
        "path": e.path,
        "targets": e.targets,
        "outcome": e.outcome,
        "status": e.status,
        "detail": e.detail,
        "client": e.client,
    }


@routes.get("/api/v1/audit", ADMIN, "audit.list", "The audit log of mutating calls, newest first", "audit", query=("since", "until", "actor", "audit_host", "action", "limit", "offset"), errors=(400, 503))
async def list_audit(request: web.Request) -> web.Response:
    q = request.query
    query = AuditQuery(
        since=get_time(request.query, "since"),
        until=get_time(request.query, "until"),
        actor=get_one(q, "actor") or None,
        host=get_one(q, "host") or None,
        action=get_one(q, "action") or None,
        limit=get_int(q, "limit", 100, minimum=1, maximum=1000) or 100,
        offset=get_int(q, "offset", 0) or 0,
    )
    try:
        entries, total = await request.app[FLEET].auditor.query(query)
    except AuditUnavailable as exc:
        raise ServiceUnavailable(str(exc), code="audit_unavailable") from None
    return json_response(
        {
            "entries": [_entry_view(e) for e in entries],
            "total": total,
            "limit": query.limit,
            "offset": query.offset,
        }
    )
