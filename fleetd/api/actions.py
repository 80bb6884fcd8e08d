"""Per-host container operations: create, start/stop/restart/kill, remove, and logs.

Each goes to the host's daemon through the poller's client, then re-polls the host so the next
``GET /api/v1/containers`` shows the effect.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from fleetd.api.audit import audit_note
from fleetd.api.errors import BadRequest, Conflict, NotFound, ServiceUnavailable, engine_error
from fleetd.api.keys import POLLER, STATE
from fleetd.api.params import check_known, get_bool, get_int, get_one, is_plain_int
from fleetd.api.render import json_response
from fleetd.config.durations import parse_duration
from fleetd.dockerapi import DockerClient, DockerError
from fleetd.fleet.state import AmbiguousContainer
from fleetd.ops.containers import Action, ActionOptions, perform
from fleetd.ops.targets import HostUnavailable, InvalidReference, check_ref, client_for, settle
from fleetd.timefmt import parse_rfc3339

__all__ = ["host_client", "routes", "settle_host"]

routes = web.RouteTableDef()
T = TypeVar("T")

LOG_TAIL_DEFAULT = 1000
LOG_TAIL_MAX = 10_000
LOG_BYTES_MAX = 8 * 1024 * 1024
LOG_TIMEOUT = 30.0
_SIGNAL = re.compile(r"(SIG)?[A-Z0-9+-]{1,16}|[0-9]{1,2}")
_TIMESTAMPED = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (.*)", re.DOTALL)


def host_client(request: web.Request, host: str) -> DockerClient:
    """The Engine client for an operation on ``host``: 404 unknown, 409 disabled."""
    try:
        return client_for(request.app[STATE], request.app[POLLER], host)
    except HostUnavailable as exc:
        if exc.kind == "unknown":
            raise NotFound(exc.message, code="unknown_host") from None
        if exc.kind == "disabled":
            raise Conflict(exc.message, code="host_disabled", details={"host": host}) from None
        raise ServiceUnavailable(exc.message, code="host_not_ready", details={"host": host}) from None


async def settle_host(request: web.Request, host: str, *, images: bool = False) -> bool:
    return await settle(request.app[STATE], request.app[POLLER], host, images=images)


def _ref(request: web.Request) -> tuple[str, str]:
    host, ref = request.match_info["host"], request.match_info["ref"]
    try:
        return host, check_ref(ref)
    except InvalidReference as exc:
        raise BadRequest(str(exc), code="bad_reference") from None


def _note_target(request: web.Request, host: str, ref: str) -> str | None:
    """Record the target for the audit log (with id and name when the aggregate knows them)."""
    found = None
    with contextlib.suppress(AmbiguousContainer):
        found = request.app[STATE].find_container(host, ref)
    if found is not None:
        audit_note(request).target(host, found.id, found.name)
        return found.id
    audit_note(request).target(host, name=ref)
    return None


async def _engine_call(host: str, call: Awaitable[T]) -> T:
    try:
        return await call
    except DockerError as exc:
        raise engine_error(host, exc) from None


@routes.post("/api/v1/hosts/{host}/containers")
async def create_container(request: web.Request) -> web.Response:
    check_known(request.query, {"name"})
    host = request.match_info["host"]
    name = get_one(request.query, "name") or None
    client = host_client(request, host)
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body must be a JSON object (the Engine's create body): {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object (the Engine\'s create body), e.g. {"Image": ...}')
    note = audit_note(request)
    note.detail["image"] = body.get("Image")
    created = await _engine_call(host, client.containers.create(body, name=name))
    note.target(host, created.Id, name)
    refreshed = await settle_host(request, host)
    return json_response(
        {
            "host": host,
            "id": created.Id,
            "name": name,
            "warnings": created.Warnings or [],
            "refreshed": refreshed,
        },
        status=201,
    )


async def _act(
    request: web.Request, action: Action, allowed: set[str], options: ActionOptions
) -> web.Response:
    check_known(request.query, allowed)
    host, ref = _ref(request)
    client = host_client(request, host)
    container_id = _note_target(request, host, ref)
    changed = await _engine_call(host, perform(client, action, ref, options))
    refreshed = await settle_host(request, host)
    body: dict[str, Any] = {"host": host, "container": ref, "action": action, "refreshed": refreshed}
    if container_id is not None:
        body["id"] = container_id
    if action != "remove":
        body["changed"] = changed
    return json_response(body)


def _t(request: web.Request) -> int | None:
    return get_int(request.query, "t", None, minimum=0, maximum=86_400)


@routes.post("/api/v1/containers/{host}/{ref}/start")
async def start_container(request: web.Request) -> web.Response:
    return await _act(request, "start", set(), ActionOptions())


@routes.post("/api/v1/containers/{host}/{ref}/stop")
async def stop_container(request: web.Request) -> web.Response:
    return await _act(request, "stop", {"t"}, ActionOptions(t=_t(request)))


@routes.post("/api/v1/containers/{host}/{ref}/restart")
async def restart_container(request: web.Request) -> web.Response:
    return await _act(request, "restart", {"t"}, ActionOptions(t=_t(request)))


@routes.post("/api/v1/containers/{host}/{ref}/kill")
async def kill_container(request: web.Request) -> web.Response:
    signal = get_one(request.query, "signal") or None
    if signal is not None and not _SIGNAL.fullmatch(signal):
        raise BadRequest(
            f"parameter 'signal' must be a signal name or number, got {signal!r}", code="bad_parameter"
        )
    return await _act(request, "kill", {"signal"}, ActionOptions(signal=signal))


@routes.delete("/api/v1/containers/{host}/{ref}")
async def remove_container(request: web.Request) -> web.Response:
    q = request.query
    options = ActionOptions(force=bool(get_bool(q, "force", False)), volumes=bool(get_bool(q, "v", False)))
    return await _act(request, "remove", {"force", "v"}, options)


def _since(raw: str | None) -> int | None:
    """Unix seconds, an RFC 3339 time, or a duration back from now (``10m``)."""
    if not raw:
        return None
    if is_plain_int(raw) and len(raw) <= 12:  # Unix seconds; 12 digits reach past the year 30000
        return int(raw)
    try:
        return int(parse_rfc3339(raw))
    except ValueError:
        pass
    try:
        return int(time.time() - parse_duration(raw))
    except ValueError:
        raise BadRequest(
            f"parameter 'since' must be Unix seconds, an RFC 3339 time or a duration such as 10m; got {raw!r}",
            code="bad_parameter",
        ) from None


@routes.get("/api/v1/containers/{host}/{ref}/logs")
async def container_logs(request: web.Request) -> web.Response:
    q = request.query
    check_known(q, {"tail", "since", "timestamps"})
    tail = get_int(q, "tail", LOG_TAIL_DEFAULT, minimum=0, maximum=LOG_TAIL_MAX)
    since = _since(get_one(q, "since"))
    timestamps = bool(get_bool(q, "timestamps", False))
    host, ref = _ref(request)
    client = host_client(request, host)
    lines: list[dict[str, str]] = []
    size = 0
    truncated = False
    try:
        inspected = await client.containers.inspect(ref)
        tty = inspected.Config.Tty if inspected.Config is not None else False
        stream = client.containers.logs(
            inspected.Id, tail=tail, since=since, timestamps=timestamps, tty=tty, timeout=LOG_TIMEOUT
        )
        async with contextlib.aclosing(stream) as log_lines:
            async for item in log_lines:
                entry = {"stream": item.stream, "line": item.line}
                if timestamps and (m := _TIMESTAMPED.fullmatch(item.line)):
                    entry = {"stream": item.stream, "time": m.group(1), "line": m.group(2)}
                lines.append(entry)
                size += len(item.line)
                if size > LOG_BYTES_MAX:
                    truncated = True
                    break
    except DockerError as exc:
        raise engine_error(host, exc) from None
    return json_response(
        {
            "host": host,
            "id": inspected.Id,
            "name": inspected.Name.lstrip("/"),
            "tty": tty,
            "lines": lines,
            "count": len(lines),
            "truncated": truncated,
        }
    )
