"""Images: fleet-wide and per-host lists (from the aggregate), registry search, pull and load."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from fleetd.api.actions import host_client, settle_host
from fleetd.api.audit import audit_note
from fleetd.api.errors import ApiError, BadRequest, NotFound, ServiceUnavailable, engine_error
from fleetd.api.keys import FLEET
from fleetd.api.params import get_int, get_one
from fleetd.api.render import json_response
from fleetd.api.routes import OPERATOR, VIEWER, RouteTable
from fleetd.dockerapi import DockerError, EngineHTTPError, EngineNotFound, ProgressEvent
from fleetd.fleet.records import HostStatus
from fleetd.ops.images import (
    LOAD_TIMEOUT,
    PULL_TIMEOUT,
    SEARCH_TIMEOUT,
    fleet_images,
    image_matches,
    registry_unreachable,
)
from fleetd.ops.targets import no_such_host
from fleetd.util.timefmt import rfc3339

__all__ = ["routes"]

routes = RouteTable()

LOAD_CHUNK = 64 * 1024


def _status_error(status: int, code: str, message: str, host: str) -> ApiError:
    exc = ApiError(message, code=code, details={"host": host})
    exc.status = status
    return exc


def _registry_error(host: str, what: str, exc: DockerError) -> ApiError:
    """Registry failures told apart from other daemon failures, in words a person can act on."""
    if isinstance(exc, EngineNotFound):
        return _status_error(404, "image_not_found", f"host {host}: {what} refused: {exc.message}", host)
    if isinstance(exc, EngineHTTPError) and exc.status >= 500:
        if registry_unreachable(exc.message):
            return _status_error(
                502,
                "registry_unreachable",
                f"host {host} has no registry access, so {what} is impossible there: {exc.message}",
                host,
            )
        return _status_error(502, "registry_error", f"host {host}: {what} failed: {exc.message}", host)
    return engine_error(host, exc)


@routes.get("/api/v1/images", VIEWER, "images.list", "Every image of the fleet once, with the hosts having it", "images", query=("host", "reference"), errors=(404,))
async def list_images(request: web.Request) -> web.Response:
    q = request.query
    fleet = request.app[FLEET].state
    hosts = set(q.getall("host", []))
    for h in sorted(hosts):
        if h not in fleet:
            raise NotFound(no_such_host(h), code="unknown_host")
    images, unlisted = fleet_images(
        fleet.records(), hosts=hosts or None, reference=get_one(q, "reference") or None
    )
    return json_response({"images": images, "total": len(images), "unlisted_hosts": unlisted})


@routes.get("/api/v1/hosts/{host}/images", VIEWER, "images.host", "One host's images, from the aggregate", "images", query=("reference",), errors=(404,))
async def host_images(request: web.Request) -> web.Response:
    host = request.match_info["host"]
    record = request.app[FLEET].state.get(host)
    if record is None:
        raise NotFound(no_such_host(host), code="unknown_host")
    reference = get_one(request.query, "reference") or None
    images = None
    if record.images is not None:
        images = [i for i in record.images if reference is None or image_matches(i, reference)]
    return json_response(
        {
            "host": host,
            "images": images,
            "total": len(images) if images is not None else None,
            "listed_at": rfc3339(record.images_seen),
            "stale": record.is_stale(request.app[FLEET].state.clock()),
        }
    )


@routes.get("/api/v1/images/search", VIEWER, "images.search", "Registry search, run by one host's daemon", "images", query=("term", "search_host", "limit"), errors=(400, 404, 409, 502, 503, 504))
async def search_images(request: web.Request) -> web.Response:
    q = request.query
    term = (get_one(q, "term") or "").strip()
    if not term:
        raise BadRequest("parameter 'term' is required, e.g. ?term=nginx", code="bad_parameter")
    limit = get_int(q, "limit", None, minimum=1, maximum=100)
    host = get_one(q, "host") or None
    if host is None:
        up = [r.name for r in request.app[FLEET].state.records() if r.status is HostStatus.UP]
        if not up:
            raise ServiceUnavailable("no host is up to run the search on", code="no_host_up")
        host = up[0]
    client = host_client(request, host)
    try:
        results = await client.images.search(term, limit=limit, timeout=SEARCH_TIMEOUT)
    except DockerError as exc:
        raise _registry_error(host, f"searching the registry for {term!r}", exc) from None
    return json_response({"host": host, "term": term, "results": results, "total": len(results)})


def _last_status(events: list[ProgressEvent]) -> str:
    for event in reversed(events):
        if event.status:
            return event.status
    return ""


@routes.post("/api/v1/hosts/{host}/images/pull", OPERATOR, "image.pull", "Pull an image onto a host", "images", query=("image",), errors=(400, 404, 409, 502, 503, 504))
async def pull_image(request: web.Request) -> web.Response:
    host = request.match_info["host"]
    image = (get_one(request.query, "image") or "").strip()
    if not image:
        raise BadRequest("parameter 'image' is required, e.g. ?image=nginx:1.27", code="bad_parameter")
    client = host_client(request, host)
    note = audit_note(request)
    note.target(host, name=image)
    try:
        events = await client.images.pull(image, timeout=PULL_TIMEOUT)
    except DockerError as exc:
        raise _registry_error(host, f"pulling {image}", exc) from None
    digest = next(
        (e.status.removeprefix("Digest: ") for e in events if e.status.startswith("Digest: ")), None
    )
    refreshed = await settle_host(request, host, images=True)
    return json_response(
        {
            "host": host,
            "image": image,
            "status": _last_status(events),
            "digest": digest,
            "refreshed": refreshed,
        }
    )


class _Counted:
    """The request body as chunks, counted on the way through (never held whole)."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.bytes = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._request.content.iter_chunked(LOAD_CHUNK):
            self.bytes += len(chunk)
            yield chunk


@routes.post("/api/v1/hosts/{host}/images/load", OPERATOR, "image.load", "Load an image tarball (docker save) onto a host, streamed", "images", body="tar", errors=(400, 404, 409, 502, 503, 504))
async def load_image(request: web.Request) -> web.Response:
    host = request.match_info["host"]
    if not request.body_exists:
        raise BadRequest("send an image tarball (the output of docker save) as the body", code="empty_body")
    client = host_client(request, host)
    body = _Counted(request)
    audit_note(request).target(host)
    try:
        events = await client.images.load(body, timeout=LOAD_TIMEOUT)
    except DockerError as exc:
        raise engine_error(host, exc) from None
    loaded = [
        line.split(": ", 1)[1].strip()
        for line in (e.stream for e in events)
        if line.startswith(("Loaded image: ", "Loaded image ID: "))
    ]
    audit_note(request).detail.update(loaded=loaded, bytes=body.bytes)
    refreshed = await settle_host(request, host, images=True)
    return json_response({"host": host, "loaded": loaded, "bytes": body.bytes, "refreshed": refreshed})
