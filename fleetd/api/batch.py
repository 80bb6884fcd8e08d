"""``POST /api/v1/actions``: one action on every container a selector matches, across the fleet.

    {"action": "stop", "selector": {"label": ["app=web"], "host": ["h1", "h2"]},
     "dry_run": false, "t": 10}

Answers synchronously with every target and its outcome; one failing host never aborts the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Literal

import msgspec
from aiohttp import web

from fleetd.api.audit import audit_note
from fleetd.api.errors import BadRequest, TooManyRequests, engine_error
from fleetd.api.keys import FLEET
from fleetd.api.render import json_response
from fleetd.api.routes import OPERATOR, RouteTable
from fleetd.api.views import BatchAnswer, BatchError, BatchSummary, BatchTarget
from fleetd.dockerapi import DockerError
from fleetd.ops.batch import TargetResult, run_batch
from fleetd.ops.containers import ActionOptions
from fleetd.ops.selector import Selector, SelectorError, Target, resolve, validate
from fleetd.ops.targets import HostUnavailable, client_for, settle

__all__ = ["BATCHES", "BatchRequest", "BatchSlots", "routes"]

routes = RouteTable()

#: At most this many per-target errors are copied into the audit entry's detail.
AUDIT_ERRORS = 50
#: Batches acting at once, fleet-wide (each with its own bounded concurrency): past it a batch is refused
#: before it does anything, so concurrent requests never multiply the load on the daemons without bound.
MAX_RUNNING_BATCHES = 4


class BatchSlots:
    """How many batches are acting now; one more than the cap is a 429 that says so (dry runs are free)."""

    def __init__(self, size: int = MAX_RUNNING_BATCHES) -> None:
        self.size = size
        self.running = 0

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        if self.running >= self.size:
            raise TooManyRequests(
                f"{self.running} batch actions are running (at most {self.size} at once); "
                "retry when one has finished",
                code="too_many_batches",
            )
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1


BATCHES = web.AppKey("batches", BatchSlots)


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["start", "stop", "restart", "remove"]
    selector: Selector | None = None
    dry_run: bool = False
    force: bool = False
    t: int | None = None
    allow_empty: bool = False


_decoder = msgspec.json.Decoder(BatchRequest)


def _parse(body: bytes) -> BatchRequest:
    if not body.strip():
        raise BadRequest('send a JSON body: {"action": ..., "selector": {...}}', code="bad_body")
    try:
        req = _decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BadRequest(f"invalid batch request: {exc}", code="bad_body") from None
    except RecursionError:
        raise BadRequest("invalid batch request: JSON nested too deeply", code="bad_body") from None
    if req.t is not None and (req.action not in ("stop", "restart") or not 0 <= req.t <= 86_400):
        raise BadRequest("'t' (0 to 86400 seconds) applies to stop and restart only", code="bad_body")
    if req.force and req.action != "remove":
        raise BadRequest("'force' applies to remove only", code="bad_body")
    return req


def _target_view(t: Target, outcome: str) -> BatchTarget:
    return BatchTarget(t.host, t.id, t.name, t.state, t.stale, outcome=outcome)


def _error_view(host: str, error: DockerError | HostUnavailable) -> BatchError:
    if isinstance(error, HostUnavailable):
        return BatchError(error.code, error.message, error.status)
    api = engine_error(host, error)
    return BatchError(api.code, api.message, api.status)


def _result_view(r: TargetResult) -> BatchTarget:
    t = r.target
    if r.error is None:
        return BatchTarget(t.host, t.id, t.name, t.state, t.stale, outcome="ok", changed=r.changed)
    return BatchTarget(
        t.host, t.id, t.name, t.state, t.stale,
        outcome="failed", error=_error_view(t.host, r.error), attempted=r.attempted,
    )  # fmt: skip


@routes.post("/api/v1/actions", OPERATOR, "batch", "One action on every container a selector matches, across hosts", "containers", body="batch", errors=(400, 429), response=BatchAnswer)
async def batch_action(request: web.Request) -> web.Response:
    req = _parse(await request.read())
    fleet, poller = request.app[FLEET].state, request.app[FLEET].poller
    try:
        selector = validate(req.selector, fleet)
    except SelectorError as exc:
        raise BadRequest(str(exc), code="bad_selector") from None
    targets = resolve(fleet, selector)
    note = audit_note(request)
    note.detail.update(selector=msgspec.to_builtins(selector), dry_run=req.dry_run, batch_action=req.action)
    for t in targets:
        note.target(t.host, t.id, t.name)
    if not targets and not req.allow_empty:
        raise BadRequest(
            "the selector matches no container; nothing was done (set allow_empty: true to accept that)",
            code="no_match",
            details={"selector": msgspec.to_builtins(selector)},
        )
    if req.dry_run:
        views = [_target_view(t, "dry_run") for t in targets]
        return json_response(BatchAnswer(req.action, True, selector, views, BatchSummary(len(targets))))

    options = ActionOptions(t=req.t, force=req.force)
    with request.app[BATCHES].take():
        results = await run_batch(targets, req.action, options, lambda host: client_for(fleet, poller, host))
        acted = sorted({r.target.host for r in results if r.attempted})
        await asyncio.gather(*(settle(fleet, poller, host) for host in acted))
    failed = [r for r in results if not r.ok]
    summary = BatchSummary(len(results), ok=len(results) - len(failed), failed=len(failed))
    note.detail.update(msgspec.to_builtins(summary))
    note.detail["errors"] = [
        {"host": r.target.host, "name": r.target.name, "error": str(r.error)} for r in failed[:AUDIT_ERRORS]
    ]
    note.outcome = "ok" if not failed else ("failed" if len(failed) == len(results) else "partial")
    return json_response(BatchAnswer(req.action, False, selector, [_result_view(r) for r in results], summary))
