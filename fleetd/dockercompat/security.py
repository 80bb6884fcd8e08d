"""Who may call what on the Docker endpoint, and the audit trail of what they did.

- A client certificate (mutual TLS) signed by ``docker_api.tls.ca`` identifies the caller by its
  subject CN; ``docker_api.client_roles`` maps CNs to roles (without the map, a certificate the CA
  signed has full access, as with dockerd's ``--tlsverify``).
- The main API's bearer tokens and roles (``auth.tokens``), sent by the docker CLI from its
  config.json ``HttpHeaders``; required when tokens exist unless ``docker_api.require_token: false``.
- ``read_only``: an allowlist of routes (matched after URL decoding); archive, export, images/get,
  exec and attach are refused even though some are GETs.
Reads need viewer; every change needs operator; logs need ``container_logs.role`` (default operator),
as on the main API.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fleetd.config.auth import match_digest, token_digest
from fleetd.config.docker_api import DockerAPISettings
from fleetd.config.model import AuthSettings, Role
from fleetd.dockercompat.errors import DockerAPIError
from fleetd.ops.audit import Auditor
from fleetd.store.audit import AuditEntry, AuditTarget
from fleetd.util.ratelimit import FailureGate, retry_seconds

__all__ = ["ROLE_ACCESS", "Access", "AuditNote", "Guard", "Principal", "record_audit"]

TOKEN_HINT = (
    'put {"HttpHeaders": {"Authorization": "Bearer <token>"}} in the docker CLI\'s config.json '
    "(docker --config DIR ...), or pass the header from your client"
)


class Access(enum.IntEnum):
    PUBLIC = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


ROLE_ACCESS: dict[Role, Access] = {"viewer": Access.VIEWER, "operator": Access.OPERATOR, "admin": Access.ADMIN}
_ROLE = ROLE_ACCESS


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # token name, certificate CN, or "anonymous"
    role: Role | None  # None: anonymous on loopback / unix socket, full access
    via: str  # token | certificate | local


@dataclass(slots=True)
class AuditNote:
    targets: list[AuditTarget] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def target(self, host: str, id: str | None = None, name: str | None = None) -> None:
        self.targets.append(AuditTarget(host=host, id=id or None, name=name or None))


def _peer_cn(request: web.Request) -> str | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class Guard:
    def __init__(self, gate: FailureGate | None = None) -> None:
        self.gate = gate or FailureGate()

    def _verify(self, auth: AuthSettings, digest: bytes) -> Principal | None:
        t = match_digest(((bytes.fromhex(t.token_sha256), t) for t in auth.tokens), digest)
        return Principal(t.name, t.role, "token") if t is not None else None

    def authenticate(self, request: web.Request, cfg: DockerAPISettings, auth: AuthSettings) -> Principal:
        client = request.remote or "local"
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            digest = token_digest(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
            wait = self.gate.retry_after(client, digest)
            if wait is not None:
                retry = retry_seconds(wait)
                raise DockerAPIError(
                    429, f"too many failed authentications from {client}; retry in {retry}s", {"Retry-After": str(retry)}
                )
            principal = self._verify(auth, digest) if digest is not None else None
            if principal is None or digest is None:
                self.gate.failed(client)
                raise DockerAPIError(401, "invalid bearer token for fleetd's Docker endpoint")
            self.gate.succeeded(client, digest)  # a proven token is never locked out by others' typos
            return principal
        cn = _peer_cn(request)
        if cn is not None:
            if cfg.client_roles:
                role = cfg.client_roles.get(cn)
                if role is None:
                    raise DockerAPIError(403, f"client certificate CN={cn} has no role in docker_api.client_roles")
                return Principal(cn, role, "certificate")
            return Principal(cn, None, "certificate")
        required = cfg.require_token if cfg.require_token is not None else bool(auth.tokens)
        if required:
            raise DockerAPIError(401, f"fleetd's Docker endpoint needs a bearer token: {TOKEN_HINT}")
        return Principal("anonymous", None, "local")

    @staticmethod
    def authorize(principal: Principal, needed: Access, what: str) -> None:
        if principal.role is None or needed is Access.PUBLIC:
            return
        if _ROLE[principal.role] < needed:
            raise DockerAPIError(
                403, f"{principal.name} has role {principal.role}; {what} needs {needed.name.lower()}"
            )


async def record_audit(
    auditor: Auditor | None,
    request: web.Request,
    principal: Principal | None,
    action: str,
    note: AuditNote,
    status: int,
    error: str | None,
) -> None:
    if auditor is None:
        return
    outcome = "denied" if status in (401, 403) else ("ok" if status < 400 else "failed")
    if outcome == "denied" and not auditor.admit_denied(request.remote or "local"):
        return  # a flood of refused calls is counted, not stored row by row (as on the main API)
    detail = dict(note.detail)
    detail["endpoint"] = "docker"
    if error:
        detail["error"] = error
    await auditor.record(
        AuditEntry(
            ts=time.time(),
            actor=principal.name if principal else "unauthenticated",
            role=principal.role if principal else None,
            action=action,
            method=request.method,
            path=request.path,
            targets=note.targets,
            outcome=outcome,
            status=status,
            detail=detail,
            client=request.remote or "local",
        )
    )
