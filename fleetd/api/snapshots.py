"""``/api/v1/snapshots``: the inventory's history — take, list, read (JSON/YAML/CSV), diff, delete, prune.

The snapshot service belongs to the running fleet (fleetd/runtime.py), which also owns the database.
With ``snapshots.enabled: false`` no snapshot is taken and every endpoint answers 503 saying so.

Access (the auth policy table): taking and reading snapshots is for viewers (it changes nothing on
any host); deleting and pruning are for admins.
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

import msgspec
import structlog
from aiohttp import web

from fleetd.api.auth import PRINCIPAL, client_address
from fleetd.api.errors import BadRequest, NotFound, ServiceUnavailable, TooManyRequests
from fleetd.api.keys import FLEET
from fleetd.api.params import INT64_MAX, get_choice, get_int, get_one, get_time, is_plain_int
from fleetd.api.render import json_response
from fleetd.api.routes import ADMIN, VIEWER, RouteTable
from fleetd.config.durations import parse_duration
from fleetd.ops.snapshots import SnapshotService, SnapshotServiceClosed
from fleetd.snapshot.diff import diff_snapshots
from fleetd.snapshot.export import FORMATS, MEDIA_TYPES, Format, dumps
from fleetd.snapshot.model import Snapshot, Trigger
from fleetd.store.errors import StoreError
from fleetd.store.retention import RetentionPolicy
from fleetd.store.snapshots import ListQuery
from fleetd.util.ratelimit import retry_seconds

__all__ = ["routes"]

log = structlog.get_logger("fleetd.snapshots")

routes = RouteTable()

BASE: Final = "/api/v1/snapshots"
MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100


# -- helpers ---------------------------------------------------------------------------------------


def _service(request: web.Request) -> SnapshotService:
    service = request.app[FLEET].snapshots
    if not service.enabled:
        config = request.app[FLEET].settings.path
        raise ServiceUnavailable(
            f"snapshots are disabled: set `snapshots: {{enabled: true}}` in {config} and restart fleetd",
            code="snapshots_disabled",
        )
    return service


def _unavailable(exc: Exception) -> ServiceUnavailable:
    if isinstance(exc, SnapshotServiceClosed):
        return ServiceUnavailable(str(exc), code="shutting_down")
    return ServiceUnavailable(f"the snapshot database failed: {exc}", code="snapshot_store_error")


def _id(raw: str, what: str, *, latest: bool = True) -> int:
    value = int(raw) if is_plain_int(raw) and len(raw) <= 19 else -1
    if not 1 <= value <= INT64_MAX:
        choices = "a snapshot id (a positive integer)" + (" or 'latest'" if latest else "")
        raise BadRequest(f"{what} must be {choices}, got {raw!r}", code="bad_snapshot_id")
    return value


async def _resolve(service: SnapshotService, raw: str, what: str = "the snapshot id") -> int:
    if raw == "latest":
        latest = await service.store.latest_id()
        if latest is None:
            raise NotFound("there are no snapshots yet", code="no_snapshots")
        return latest
    return _id(raw, what)


def _diff_body(old: Snapshot, new: Snapshot) -> bytes:
    return msgspec.json.encode(diff_snapshots(old, new))


def _not_found(snapshot_id: int) -> NotFound:
    return NotFound(f"no snapshot with id {snapshot_id}", code="unknown_snapshot")


def _export(snapshot: Snapshot, fmt: Format, body: bytes) -> web.Response:
    content_type, charset = MEDIA_TYPES[fmt]
    headers = {}
    if fmt != "json":
        headers["Content-Disposition"] = f'inline; filename="fleetd-snapshot-{snapshot.id}.{fmt}"'
    return web.Response(body=body, content_type=content_type, charset=charset, headers=headers)


# -- routes (prune and latest before {id}: the router tries them in order) --------------------------


@routes.post(BASE, VIEWER, "snapshot.take", "Take a snapshot now", "snapshots", ok=201, errors=(429, 503))
async def take_snapshot(request: web.Request) -> web.Response:
    service = _service(request)
    principal = request.get(PRINCIPAL)
    if principal is None or principal.role not in ("operator", "admin"):
        caller = principal.name if principal is not None and principal.role else client_address(request)
        wait = service.on_demand_wait(caller)
        if wait is not None:
            retry = retry_seconds(wait)
            raise TooManyRequests(
                f"{caller} may take 10 on-demand snapshots at once, then one a minute; retry in {retry}s "
                "(operators have no such limit; the schedule takes its own)",
                code="snapshot_budget",
                details={"retry_after": retry},
            )
    try:
        info = await service.take(Trigger.ON_DEMAND)
    except (StoreError, SnapshotServiceClosed) as exc:
        raise _unavailable(exc) from None
    return json_response(info, status=201, headers={"Location": f"{BASE}/{info.id}"})


@routes.get(BASE, VIEWER, "snapshots.list", "Stored snapshots, newest first", "snapshots", query=("since", "until", "before", "limit", "offset"))
async def list_snapshots(request: web.Request) -> web.Response:
    q = request.query
    service = _service(request)
    limit = get_int(q, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT) or DEFAULT_LIMIT
    offset = get_int(q, "offset", 0) or 0
    before = get_int(q, "before", None, minimum=1)
    since, until = get_time(q, "since"), get_time(q, "until")
    if since is not None and until is not None and since > until:
        raise BadRequest("'since' is after 'until'", code="bad_parameter")
    query = ListQuery(since=since, until=until, before=before, limit=limit, offset=offset)
    try:
        page = await service.store.list(query)
    except StoreError as exc:
        raise _unavailable(exc) from None
    following = None
    if len(page.items) == limit:
        keep = {k: v for k, v in q.items() if k in ("since", "until")}
        keep.update(before=str(page.items[-1].id), limit=str(limit))
        following = str(request.rel_url.with_query(keep))
    return json_response(
        {
            "snapshots": page.items,
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "next": following,
        }
    )


@routes.post(f"{BASE}/prune", ADMIN, "snapshots.prune", "Apply snapshot retention now", "snapshots", query=("last", "max_age"))
async def prune_snapshots(request: web.Request) -> web.Response:
    q = request.query
    service = _service(request)
    keep = request.app[FLEET].settings.snapshots.keep
    last = get_int(q, "last", keep.last, minimum=1)
    raw_age = get_one(q, "max_age")
    max_age = keep.max_age
    if raw_age:
        try:
            max_age = parse_duration(raw_age)
        except ValueError as exc:
            raise BadRequest(f"parameter 'max_age': {exc}", code="bad_parameter") from None
    try:
        result = await service.prune(RetentionPolicy(last=last, max_age=max_age))
    except StoreError as exc:
        raise _unavailable(exc) from None
    return json_response(
        {
            "deleted": result.deleted,
            "versions_deleted": result.versions_deleted,
            "remaining": result.remaining,
            "policy": {"last": last, "max_age": max_age},
        }
    )


async def _get(request: web.Request, raw: str) -> web.Response:
    q = request.query
    service = _service(request)
    fmt = cast(Format, get_choice(q, "format", FORMATS) or "json")  # get_choice checked it
    snapshot_id = await _resolve(service, raw)
    try:
        snapshot = await service.store.get(snapshot_id)
    except StoreError as exc:
        raise _unavailable(exc) from None
    if snapshot is None:
        raise _not_found(snapshot_id)
    body = await asyncio.to_thread(dumps, snapshot, fmt)  # 40,000 containers take a while to encode
    return _export(snapshot, fmt, body)


@routes.get(f"{BASE}/latest", VIEWER, "snapshots.latest", "The newest snapshot", "snapshots", query=("format",), errors=(404,))
async def get_latest(request: web.Request) -> web.Response:
    return await _get(request, "latest")


@routes.get(BASE + "/{id}", VIEWER, "snapshots.get", "One snapshot (json, yaml or csv)", "snapshots", query=("format",), errors=(404,))
async def get_snapshot(request: web.Request) -> web.Response:
    return await _get(request, request.match_info["id"])


@routes.delete(BASE + "/{id}", ADMIN, "snapshot.delete", "Delete a snapshot", "snapshots", errors=(404,))
async def delete_snapshot(request: web.Request) -> web.Response:
    service = _service(request)
    snapshot_id = _id(request.match_info["id"], "the snapshot id", latest=False)
    try:
        deleted = await service.store.delete(snapshot_id)
    except StoreError as exc:
        raise _unavailable(exc) from None
    if not deleted:
        raise _not_found(snapshot_id)
    return json_response({"deleted": snapshot_id})


@routes.get(BASE + "/{id}/diff", VIEWER, "snapshots.diff", "Changes between two snapshots", "snapshots", query=("against",), errors=(404,))
async def diff_snapshot(request: web.Request) -> web.Response:
    q = request.query
    service = _service(request)
    new_id = await _resolve(service, request.match_info["id"])
    raw_against = get_one(q, "against")
    if raw_against:
        old_id = await _resolve(service, raw_against, "parameter 'against'")
    else:
        previous = await service.store.previous_id(new_id)
        if previous is None:
            raise NotFound(
                f"snapshot {new_id} has no earlier snapshot to compare with; give ?against=ID",
                code="no_earlier_snapshot",
            )
        old_id = previous
    try:
        old, new = await service.store.pair(old_id, new_id)
    except StoreError as exc:
        raise _unavailable(exc) from None
    if new is None:
        raise _not_found(new_id)
    if old is None:
        raise _not_found(old_id)
    body = await asyncio.to_thread(_diff_body, old, new)  # a diff of a whole fleet can be large
    return web.Response(body=body, content_type="application/json")
