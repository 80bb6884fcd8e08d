"""Container calls: list and inspect from the aggregate and the owner, actions proxied to the owner
and re-read after (read-your-writes), create placed on a host, exec instances remembered by host."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from fleetd.dockercompat.context import Call
from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.hijack import hijack
from fleetd.dockercompat.identity import Target, no_such_container
from fleetd.dockercompat.placement import choose_host, extract_rules, has_image
from fleetd.dockercompat.proxy import forward, request_headers, upstream_error
from fleetd.dockercompat.reads import container_list, node_object
from fleetd.dockercompat.responses import json_ok

__all__ = [
    "action",
    "attach",
    "create",
    "exec_create",
    "exec_inspect",
    "exec_start",
    "inspect",
    "list_containers",
    "passthrough",
    "remove",
    "streamed",
    "wait",
]

CREATE_BODY_MAX = 4 * 1024 * 1024
ACTION_MARGIN = 30.0  # beyond the host's poll timeout, for calls the daemon takes its time with
DEFAULT_STOP = 10


class _Created(msgspec.Struct):
    Id: str
    Warnings: list[str] | None = None


class _ExecCreated(msgspec.Struct):
    Id: str


async def _json_body(call: Call) -> dict[str, Any]:
    raw = await call.request.content.read(CREATE_BODY_MAX + 1)
    if len(raw) > CREATE_BODY_MAX:
        raise DockerAPIError(413, "request body too large")
    if not raw.strip():
        return {}
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise DockerAPIError(400, f"invalid JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise DockerAPIError(400, "the body must be a JSON object")
    return doc


async def list_containers(call: Call) -> web.StreamResponse:
    await call.fleet.settled()
    return json_ok(container_list(call.fleet, call.svc.identity, call.queries()))


async def inspect(call: Call) -> web.StreamResponse:
    target = await call.target()
    up = call.upstream(target.host)
    path = await call.path_for(target.host, f"/containers/{target.id}/json")
    async with up.request("GET", path, query=call.request.query_string) as resp:
        if resp.status == 404:
            raise no_such_container(call.params["ref"])
        if resp.status >= 400:
            raise await upstream_error(resp, target.host)
        doc = msgspec.json.decode(await resp.read())
    if isinstance(doc, dict):
        doc["Node"] = node_object(call.fleet.record(target.host))
    return json_ok(doc)


def _timeout(call: Call, action_name: str) -> float:
    up_timeout = call.fleet.record(call.note.targets[0].host).settings.timeout if call.note.targets else 5.0
    if action_name in ("stop", "restart"):
        t = call.query("t")
        wait = int(t) if t and t.lstrip("-").isdigit() and int(t) >= 0 else DEFAULT_STOP
        return up_timeout + wait + ACTION_MARGIN
    return up_timeout + ACTION_MARGIN


async def action(call: Call, name: str) -> web.StreamResponse:
    """start, stop, restart, kill, pause, unpause, rename, resize, update: then re-read the host."""
    target = await call.target()
    path = await call.path_for(target.host, f"/containers/{target.id}/{name}")
    body = await call.request.read() if call.request.can_read_body else None
    try:
        return await forward(call.request, call.upstream(target.host), path, body=body, timeout=_timeout(call, name))
    finally:
        if name != "resize":  # a terminal's size changes nothing the aggregate holds
            await call.fleet.refresh(target.host)


async def remove(call: Call) -> web.StreamResponse:
    target = await call.target()
    path = await call.path_for(target.host, f"/containers/{target.id}")
    try:
        return await forward(call.request, call.upstream(target.host), path, timeout=_timeout(call, "rm"))
    finally:
        await call.fleet.refresh(target.host)


async def wait(call: Call) -> web.StreamResponse:
    """Headers as soon as the daemon's come (``docker run`` waits for them before starting)."""
    target = await call.target()
    path = await call.path_for(target.host, f"/containers/{target.id}/wait")
    try:
        return await forward(call.request, call.upstream(target.host), path, stream=True)
    finally:
        await call.fleet.refresh(target.host)


async def streamed(call: Call, name: str) -> web.StreamResponse:
    """logs, stats, export, archive: relayed as they come, byte for byte."""
    target = await call.target()
    path = await call.path_for(target.host, f"/containers/{target.id}/{name}")
    body = call.request.content if call.request.method == "PUT" else None
    return await forward(call.request, call.upstream(target.host), path, body=body, stream=True)


async def passthrough(call: Call, name: str) -> web.StreamResponse:
    """top, changes: small answers, passed through."""
    target = await call.target()
    path = await call.path_for(target.host, f"/containers/{target.id}/{name}")
    return await forward(call.request, call.upstream(target.host), path)


async def attach(call: Call) -> web.StreamResponse:
    target = await call.target()
    path = await call.path_for(target.host, f"/containers/{target.id}/attach")
    body = await call.request.read()
    return await hijack(call.request, call.upstream(target.host), path, body, call.request.headers.get("Content-Type"))


async def create(call: Call) -> web.StreamResponse:
    body = await _json_body(call)
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise DockerAPIError(400, "config.Image is required: which image should the container run?")
    placement = extract_rules(body, call.query("name"), {r.name for r in call.fleet.records()})
    record = choose_host(call.fleet.records(), placement, image)
    host = record.name
    call.note.detail["image"] = image
    if placement.rules:
        call.note.detail["rules"] = [r.text for r in placement.rules]
    params = [(k, v) for k, v in call.request.query.items() if k != "name"]
    if placement.name:
        params.append(("name", placement.name))
    path = await call.path_for(host, "/containers/create")
    up = call.upstream(host)
    async with up.request(
        "POST",
        path,
        query=urlencode(params),
        data=msgspec.json.encode(body),
        headers={"Content-Type": "application/json"},
        timeout=up.timeout + ACTION_MARGIN,
    ) as resp:
        if resp.status >= 400:
            error = await upstream_error(resp, host)
            if resp.status == 404 and not has_image(record, image):
                call.svc.remember_pull(image, host)  # the CLI pulls next: to this host
                error = DockerAPIError(404, f"{error.message} (on host {host})")
            call.note.target(host, name=placement.name)
            raise error
        created = msgspec.json.decode(await resp.read(), type=_Created)
    call.note.target(host, created.Id, placement.name)
    await call.fleet.refresh(host)  # the id is in the aggregate before the CLI uses it
    return json_ok({"Id": created.Id, "Warnings": created.Warnings or []}, status=201)


async def exec_create(call: Call) -> web.StreamResponse:
    target = await call.target()
    path = await call.path_for(target.host, f"/containers/{target.id}/exec")
    up = call.upstream(target.host)
    body = await call.request.read()
    async with up.request("POST", path, data=body, headers=request_headers(call.request)) as resp:
        if resp.status >= 400:
            raise await upstream_error(resp, target.host)
        created = msgspec.json.decode(await resp.read(), type=_ExecCreated)
    call.svc.identity.remember_exec(created.Id, target)
    call.note.detail["exec"] = created.Id
    return json_ok({"Id": created.Id}, status=201)


async def _exec_owner(call: Call) -> Target:
    owner = await call.svc.identity.exec_owner(call.params["id"])
    call.note.target(owner.host, owner.id, owner.name)
    return owner


async def exec_start(call: Call) -> web.StreamResponse:
    owner = await _exec_owner(call)
    exec_id = call.params["id"]
    path = await call.path_for(owner.host, f"/exec/{exec_id}/start")
    body = await call.request.read()
    detach = False
    try:
        doc = msgspec.json.decode(body) if body.strip() else {}
        detach = isinstance(doc, dict) and bool(doc.get("Detach"))
    except msgspec.DecodeError:
        raise DockerAPIError(400, "invalid JSON body") from None
    up = call.upstream(owner.host)
    if detach:
        return await forward(call.request, up, path, body=body)
    return await hijack(call.request, up, path, body, call.request.headers.get("Content-Type") or "application/json")


async def exec_inspect(call: Call, name: str) -> web.StreamResponse:
    owner = await call.svc.identity.exec_owner(call.params["id"])
    path = await call.path_for(owner.host, f"/exec/{call.params['id']}/{name}")
    body = await call.request.read() if call.request.method == "POST" else None
    return await forward(call.request, call.upstream(owner.host), path, body=body)
