"""Per-host container operations: create, start/stop/restart/kill, remove (logs: :mod:`fleetd.api.logs`).

Each goes to the host's daemon through the poller's client, then re-polls the host so the next
``GET /api/v1/containers`` shows the effect.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from fleetd.api.audit import audit_note
from fleetd.api.errors import BadRequest, Conflict, NotFound, ServiceUnavailable, engine_error
from fleetd.api.keys import FLEET
from fleetd.api.params import get_bool, get_int, get_one
from fleetd.api.render import json_response
from fleetd.api.routes import OPERATOR, RouteTable
from fleetd.dockerapi import DockerClient, DockerError
from fleetd.fleet.state import AmbiguousContainer
from fleetd.ops.containers import Action, ActionOptions, perform
from fleetd.ops.targets import HostUnavailable, InvalidReference, check_ref, client_for, settle

__all__ = ["container_ref", "engine_call", "host_client", "routes", "settle_host"]

routes = RouteTable()
T = TypeVar("T")

_SIGNAL = re.compile(r"(SIG)?[A-Z0-9+-]{1,16}|[0-9]{1,2}")


def host_client(request: web.Request, host: str) -> DockerClient:
    """The Engine client for an operation on ``host``: 404 unknown, 409 disabled."""
    try:
        return client_for(request.app[FLEET].state, request.app[FLEET].poller, host)
    except HostUnavailable as exc:
        if exc.kind == "unknown":
            raise NotFound(exc.message, code=exc.code) from None
        if exc.kind == "disabled":
            raise Conflict(exc.message, code=exc.code, details={"host": host}) from None
        raise ServiceUnavailable(exc.message, code=exc.code, details={"host": host}) from None


async def settle_host(request: web.Request, host: str, *, images: bool = False) -> bool:
    return await settle(request.app[FLEET].state, request.app[FLEET].poller, host, images=images)


def container_ref(request: web.Request) -> tuple[str, str]:
    host, ref = request.match_info["host"], request.match_info["ref"]
    try:
        return host, check_ref(ref)
    except InvalidReference as exc:
        raise BadRequest(str(exc), code="bad_reference") from None


def _note_target(request: web.Request, host: str, ref: str) -> str | None:
    """Record the target for the audit log (with id and name when the aggregate knows them)."""
    found = None
    with contextlib.suppress(AmbiguousContainer):
        found = request.app[FLEET].state.find_container(host, ref)
    if found is not None:
        audit_note(request).target(host, found.id, found.name)
        return found.id
    audit_note(request).target(host, name=ref)
    return None


async def engine_call(host: str, call: Awaitable[T]) -> T:
    try:
        return await call
    except DockerError as exc:
        raise engine_error(host, exc) from None


#: Top-level keys of the Engine's ``POST /containers/create`` body (ContainerConfig, HostConfig,
#: NetworkingConfig): anything else would be silently ignored by the daemon.
CREATE_KEYS = frozenset(
    {
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
        "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
        "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
        "StopTimeout", "Shell", "HostConfig", "NetworkingConfig",
    }
)  # fmt: skip


@routes.post("/api/v1/hosts/{host}/containers", OPERATOR, "container.create", "Create a container with the Engine's own create body", "containers", query=("name",), body="create", ok=201, errors=(400, 404, 409, 502, 503, 504))
async def create_container(request: web.Request) -> web.Response:
    host = request.match_info["host"]
    name = get_one(request.query, "name") or None
    client = host_client(request, host)
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body must be a JSON object (the Engine's create body): {exc}") from None
    except RecursionError:
        raise BadRequest("the body nests JSON too deeply to be a container's create body") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object (the Engine\'s create body), e.g. {"Image": ...}')
    if "name" in body or "Name" in body:
        raise BadRequest(
            "the container's name goes in the query (?name=web3), not in the body; nothing was created",
            code="bad_body",
        )
    unknown = sorted(set(body) - CREATE_KEYS)
    if unknown:
        raise BadRequest(
            f"unknown key {unknown[0]!r} in the create body (the Engine would ignore it); "
            f"known: {', '.join(sorted(CREATE_KEYS))}",
            code="bad_body",
        )
    note = audit_note(request)
    note.detail["image"] = body.get("Image")
    created = await engine_call(host, client.containers.create(body, name=name))
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


async def _act(request: web.Request, action: Action, options: ActionOptions) -> web.Response:
    host, ref = container_ref(request)
    client = host_client(request, host)
    container_id = _note_target(request, host, ref)
    changed = await engine_call(host, perform(client, action, ref, options))
    refreshed = await settle_host(request, host)
    body: dict[str, Any] = {"host": host, "container": ref, "action": action, "refreshed": refreshed}
    if container_id is not None:
        body["id"] = container_id
    if action != "remove":
        body["changed"] = changed
    return json_response(body)


def _t(request: web.Request) -> int | None:
    return get_int(request.query, "t", None, minimum=0, maximum=86_400)


@routes.post("/api/v1/containers/{host}/{ref}/start", OPERATOR, "container.start", "Start a container", "containers", errors=(404, 409, 502, 503, 504))
async def start_container(request: web.Request) -> web.Response:
    return await _act(request, "start", ActionOptions())


@routes.post("/api/v1/containers/{host}/{ref}/stop", OPERATOR, "container.stop", "Stop a container", "containers", query=("t",), errors=(404, 409, 502, 503, 504))
async def stop_container(request: web.Request) -> web.Response:
    return await _act(request, "stop", ActionOptions(t=_t(request)))


@routes.post("/api/v1/containers/{host}/{ref}/restart", OPERATOR, "container.restart", "Restart a container", "containers", query=("t",), errors=(404, 409, 502, 503, 504))
async def restart_container(request: web.Request) -> web.Response:
    return await _act(request, "restart", ActionOptions(t=_t(request)))


@routes.post("/api/v1/containers/{host}/{ref}/kill", OPERATOR, "container.kill", "Kill a container", "containers", query=("signal",), errors=(404, 409, 502, 503, 504))
async def kill_container(request: web.Request) -> web.Response:
    signal = get_one(request.query, "signal") or None
    if signal is not None and not _SIGNAL.fullmatch(signal):
        raise BadRequest(
            f"parameter 'signal' must be a signal name or number, got {signal!r}", code="bad_parameter"
        )
    return await _act(request, "kill", ActionOptions(signal=signal))


@routes.delete("/api/v1/containers/{host}/{ref}", OPERATOR, "container.remove", "Remove a container", "containers", query=("force", "v"), errors=(404, 409, 502, 503, 504))
async def remove_container(request: web.Request) -> web.Response:
    q = request.query
    options = ActionOptions(force=bool(get_bool(q, "force", False)), volumes=bool(get_bool(q, "v", False)))
    return await _act(request, "remove", options)
