"""The request pipeline of the Docker endpoint: version prefix, route, authentication, read-only
allowlist, role, the call, and the audit entry of every change; every answer carries the Engine's
headers and every error the Engine's shape."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

import structlog
from aiohttp import web

from fleetd.dockercompat.context import Call, Service
from fleetd.dockercompat.errors import DockerAPIError, error_response, not_supported
from fleetd.dockercompat.proxy import SENT_STATUS
from fleetd.dockercompat.reads import FLEETD_VERSION
from fleetd.dockercompat.routes import match_route
from fleetd.dockercompat.security import ROLE_ACCESS, Access, AuditNote, Principal, record_audit
from fleetd.dockercompat.versions import VERSION_PREFIX, too_new

__all__ = ["SERVICE", "create_docker_app"]

log = structlog.get_logger("fleetd.dockercompat")

SERVICE = web.AppKey("docker_service", Service)


def _engine_headers(resp: web.StreamResponse, advertised: str) -> None:
    resp.headers["Api-Version"] = advertised
    resp.headers["Ostype"] = "linux"
    resp.headers["Docker-Experimental"] = "false"
    resp.headers["Server"] = f"fleetd/{FLEETD_VERSION} (linux)"


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    svc = request.app[SERVICE]
    _engine_headers(response, svc.advertised())


async def handle(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICE]
    cfg = svc.settings()
    path = unquote(request.raw_path.split("?", 1)[0])
    if "//" in path or "/../" in path or path.endswith("/.."):
        return error_response(400, f"invalid path {path!r}")
    advertised = svc.advertised()
    version = advertised
    m = VERSION_PREFIX.match(path)
    if m is not None:
        version, path = m.group(1), m.group(2)
        if refusal := too_new(version, advertised):
            return error_response(400, refusal)
    method = "GET" if request.method == "HEAD" and not path.endswith("/archive") else request.method
    found = match_route(method, path)
    if found is None and request.method == "HEAD":
        found = match_route("HEAD", path)
    principal: Principal | None = None
    note = AuditNote()
    action = found[0].action if found else ""
    status, error = 500, None
    try:
        if found is None:
            if cfg.read_only:
                raise DockerAPIError(403, f"fleetd's Docker endpoint is read-only: {request.method} {path} is refused")
            principal = svc.guard.authenticate(request, cfg, svc.fleet.settings().auth)
            raise not_supported(f"{request.method} {path}")
        route, params = found
        if route.access is not Access.PUBLIC:
            principal = svc.guard.authenticate(request, cfg, svc.fleet.settings().auth)
        if cfg.read_only and not route.read_only:
            raise DockerAPIError(
                403, f"fleetd's Docker endpoint is read-only (docker_api.read_only): {request.method} {path} is refused"
            )
        if principal is not None:
            needed = route.access
            if route.logs:  # as on the main API: container_logs.role says who may read logs
                needed = ROLE_ACCESS[svc.fleet.settings().container_logs.role]
            svc.guard.authorize(principal, needed, f"{request.method} {path}")
        call = Call(request, svc, version, params, note, principal)
        response = await route.handler(call)
        status = response.status
        return response
    except DockerAPIError as exc:
        status, error = exc.status, exc.message
        if exc.status >= 500 and exc.status != 501:
            log.warning("docker call failed", method=request.method, path=path, status=exc.status, error=exc.message)
        return error_response(exc.status, exc.message, exc.headers)
    except asyncio.CancelledError:
        sent = request.get(SENT_STATUS)
        status, error = (sent, None) if sent is not None else (499, "the client went away before the answer")
        raise
    except Exception:
        log.exception("docker call failed", method=request.method, path=path)
        error = "internal error; see fleetd's log"
        return error_response(500, error)
    finally:
        if action or (found is None and request.method not in ("GET", "HEAD")):
            # shielded: a call whose client left (aiohttp cancels its handler) is still audited
            await asyncio.shield(
                record_audit(svc.fleet.auditor, request, principal, action or "docker.unsupported", note, status, error)
            )


def create_docker_app(service: Service) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[SERVICE] = service
    app.on_response_prepare.append(_on_prepare)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
