"""Image calls: the merged list from the aggregate, inspect on a host that has the image, and
pulls to the host a create was placed on (``X-Registry-Auth`` passed through, never logged)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from fleetd.dockercompat.context import Call
from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.placement import Placement, choose_host, has_image
from fleetd.dockercompat.proxy import forward, upstream_error
from fleetd.dockercompat.reads import image_list, node_object
from fleetd.dockercompat.responses import json_ok
from fleetd.fleet.records import HostStatus

__all__ = ["inspect_image", "list_images", "pull"]


async def list_images(call: Call) -> web.StreamResponse:
    await call.fleet.settled()
    return json_ok(image_list(call.fleet, call.queries(), call.version))


async def inspect_image(call: Call) -> web.StreamResponse:
    name = call.params["name"]
    hosts = [r for r in call.fleet.up_records() if has_image(r, name)]
    if not hosts:
        raise DockerAPIError(404, f"No such image: {name}")
    record = hosts[0]
    path = await call.path_for(record.name, f"/images/{name}/json")
    async with call.upstream(record.name).request("GET", path) as resp:
        if resp.status >= 400:
            raise await upstream_error(resp, record.name)
        doc = msgspec.json.decode(await resp.read())
    if isinstance(doc, dict):
        doc["Node"] = node_object(record)
        doc["Hosts"] = [r.name for r in hosts]
    return json_ok(doc)


async def pull(call: Call) -> web.StreamResponse:
    image = call.query("fromImage") or ""
    if not image:
        raise DockerAPIError(400, "only pulls (fromImage=) are supported by fleetd; import is not")
    tag = call.query("tag") or ""
    full = f"{image}:{tag}" if tag and not tag.startswith("sha256:") else (f"{image}@{tag}" if tag else image)
    host = call.svc.pull_host(full) or call.svc.pull_host(image)
    if host is None:
        host = choose_host(call.fleet.records(), Placement(), full).name
    record = call.fleet.record(host)
    if record.status is not HostStatus.UP:
        raise DockerAPIError(503, f"host {host} is {record.status.value}")
    call.note.target(host, name=full)
    call.note.detail["image"] = full
    path = await call.path_for(host, "/images/create")
    try:
        return await forward(call.request, call.upstream(host), path, stream=True)
    finally:
        await call.fleet.refresh(host, images=True)
