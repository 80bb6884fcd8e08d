"""Who may call what: bearer tokens, roles and one central policy table.

Every route declares, where its handler is (fleetd/api/routes.py), the lowest role that may call it (or
``PUBLIC``) and its audit action name. :func:`auth_middleware` is the only place that decides, from that
table; handlers never check roles.

- Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest` against every configured
  digest (no early exit), and never logged.
- Without tokens, reads are open only while fleetd listens on loopback (or ``auth.anonymous_read``)
  and every operation answers 403 saying how to enable it.
- Wrong tokens are rate-limited per client address (a token bucket); a blocked address gets 429,
  except for a token that already authenticated from that address (a valid token is never locked out).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from fleetd.api.errors import ApiError, Forbidden, Unauthorized
from fleetd.api.keys import FLEET
from fleetd.api.render import json_response
from fleetd.api.routes import ROLE_ACCESS, ROUTES, Access, Rule
from fleetd.config.auth import match_digest, token_digest
from fleetd.config.exposure import anonymous_reads
from fleetd.config.model import AuthSettings, Role, Settings
from fleetd.util.ratelimit import FailureGate, retry_seconds

__all__ = [
    "ANONYMOUS",
    "AUTH",
    "PRINCIPAL",
    "RULE",
    "SAFE_METHODS",
    "Access",
    "AuthGuard",
    "Principal",
    "Rule",
    "auth_middleware",
    "client_address",
]

log = structlog.get_logger("fleetd.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # the token's name, or "anonymous"
    role: Role | None  # None for anonymous callers


ANONYMOUS = Principal("anonymous", None)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthGuard:
    """Per-app authentication state: the token digests in force and the wrong-token gate."""

    def __init__(self, gate: FailureGate | None = None) -> None:
        self.gate = gate or FailureGate()
        self._for: AuthSettings | None = None
        self._digests: list[tuple[bytes, Principal]] = []

    def _tokens(self, auth: AuthSettings) -> list[tuple[bytes, Principal]]:
        if auth is not self._for:  # the config was reloaded
            self._digests = [(bytes.fromhex(t.token_sha256), Principal(t.name, t.role)) for t in auth.tokens]
            self._for = auth
        return self._digests

    def verify(self, auth: AuthSettings, token: str) -> Principal | None:
        """The principal whose digest matches; every digest is compared, whatever matched first."""
        return self.verify_digest(auth, token_digest(token))

    def verify_digest(self, auth: AuthSettings, presented: bytes) -> Principal | None:
        return match_digest(self._tokens(auth), presented)


AUTH = web.AppKey("auth", AuthGuard)
PRINCIPAL = web.RequestKey("principal", Principal)
RULE = web.RequestKey("rule", Rule)

_HOW_TO_ENABLE = (
    "fleet operations are disabled because no API tokens are configured; add auth.tokens "
    "(name, token_sha256 or token_file, role: operator or admin) to fleetd's config and reload"
)


def _refuse(exc: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(exc.body(), status=exc.status, headers=headers)


def _challenge(message: str, *, invalid: bool) -> web.Response:
    value = 'Bearer realm="fleetd"' + (', error="invalid_token"' if invalid else "")
    return _refuse(Unauthorized(message), {"WWW-Authenticate": value})


def _bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token and " " not in token else None


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def _authorize(request: web.Request, rule: Rule, settings: Settings) -> web.Response | Principal:
    auth = settings.auth
    needed = rule.needed(settings)
    if needed is Access.PUBLIC:
        if not auth.protect_health or rule.shell:
            return ANONYMOUS
        needed = Access.VIEWER
    header = request.headers.get("Authorization")
    if header is None and rule.probe:
        return ANONYMOUS
    if header is None:
        if needed is Access.VIEWER and anonymous_reads(settings):
            return ANONYMOUS
        if not auth.tokens:
            if needed is Access.VIEWER:
                return _refuse(
                    Forbidden(
                        "reads without a token are open only while fleetd listens on loopback; "
                        "add auth.tokens to the config or set auth.anonymous_read: true",
                        code="auth_not_configured",
                    )
                )
            return _refuse(Forbidden(_HOW_TO_ENABLE, code="operations_disabled"))
        return _challenge("this endpoint needs a bearer token: Authorization: Bearer <token>", invalid=False)
    guard = request.app[AUTH]
    addr = client_address(request)
    token = _bearer(header)
    digest = token_digest(token) if token is not None else None  # hashed once for every use below
    wait = guard.gate.retry_after(addr, digest)
    if wait is not None:
        retry = retry_seconds(wait)
        exc = ApiError(
            f"too many failed authentications from {addr}; retry in {retry}s", code="too_many_failures"
        )
        exc.status = 429
        return _refuse(exc, {"Retry-After": str(retry)})
    principal = guard.verify_digest(auth, digest) if digest is not None else None
    if principal is not None and digest is not None:
        guard.gate.succeeded(addr, digest)
    if principal is None:
        blocked = guard.gate.failed(addr)
        reason = "unknown token" if token is not None else "malformed Authorization header"
        log.warning("authentication failed", client=addr, reason=reason, path=request.path, blocked=blocked)
        message = "invalid bearer token" if token is not None else "expected Authorization: Bearer <token>"
        return _challenge(message, invalid=True)
    request[PRINCIPAL] = principal  # known even when refused, for the audit log
    if principal.role is None or ROLE_ACCESS[principal.role] < needed:
        return _refuse(
            Forbidden(
                f"token '{principal.name}' has role {principal.role}; {request.method} {request.path} "
                f"needs {needed.name.lower()}",
                code="insufficient_role",
            )
        )
    return principal


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route
    if request.match_info.http_exception is not None or route.resource is None:
        return await handler(request)  # no such route: the router's 404/405 tells nothing secret
    rule = request.app[ROUTES].rule_for(request.method, route.resource.canonical)
    if rule is None:
        if request.method not in SAFE_METHODS:
            return _refuse(
                Forbidden(
                    f"no access policy for {request.method} {route.resource.canonical}; refused",
                    code="no_policy",
                )
            )
        rule = Rule(Access.VIEWER, "read")
    request[RULE] = rule
    decided = _authorize(request, rule, request.app[FLEET].settings)
    if isinstance(decided, web.Response):
        return decided
    request[PRINCIPAL] = decided
    return await handler(request)
