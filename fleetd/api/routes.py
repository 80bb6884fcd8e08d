"""The route table: every endpoint declared once, where its handler is.

    routes = RouteTable()

    @routes.get("/api/v1/hosts", VIEWER, "hosts.list", "Every host with its health", "fleet",
                query=("state", "label"))
    async def list_hosts(request: web.Request) -> web.Response: ...

One declaration gives the router its route, the auth policy its rule (the lowest role, the audit
action name), OpenAPI its operation, and the query check its parameters: a request with a parameter
the route does not declare is answered 400 before the handler runs. ``create_app`` registers every
table with :func:`register`, which also puts the :class:`RouteIndex` behind :data:`ROUTES` for the
auth middleware, ``/api/v1/openapi.json`` and ``/api/v1/whoami``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from fleetd.api.params import check_known
from fleetd.config.model import Settings
from fleetd.config.roles import Role

__all__ = [
    "ADMIN",
    "OPERATOR",
    "PUBLIC",
    "ROLE_ACCESS",
    "ROUTES",
    "VIEWER",
    "Access",
    "Route",
    "RouteIndex",
    "RouteTable",
    "Rule",
    "canonical",
    "register",
    "template_key",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(enum.IntEnum):
    """The lowest role a route needs; ordered so that ``role >= needed`` is the check."""

    PUBLIC = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


PUBLIC: Final = Access.PUBLIC
VIEWER: Final = Access.VIEWER
OPERATOR: Final = Access.OPERATOR
ADMIN: Final = Access.ADMIN

ROLE_ACCESS: dict[Role, Access] = {
    "viewer": Access.VIEWER,
    "operator": Access.OPERATOR,
    "admin": Access.ADMIN,
}


@dataclass(frozen=True, slots=True)
class Rule:
    access: Access
    action: str  # the audit log's name for the call
    shell: bool = False  # the dashboard's static files: public whatever protect_health says
    probe: bool = False  # without a token, answer as anonymous (the caller learns it must sign in)
    logs: bool = False  # container logs: the role needed comes from container_logs.role instead

    def needed(self, settings: Settings) -> Access:
        return ROLE_ACCESS[settings.container_logs.role] if self.logs else self.access


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access
    action: str
    summary: str
    tag: str
    query: tuple[str, ...] = ()
    body: str | None = None  # OpenAPI request body: "create" (an Engine create body), "batch", "tar"
    ok: int = 200
    errors: tuple[int, ...] = ()
    logs: bool = False
    shell: bool = False
    probe: bool = False
    response: type[Any] | None = None  # the msgspec type of the answer, for OpenAPI

    @property
    def params(self) -> tuple[str, ...]:
        """The query parameters as sent (``search_host``/``audit_host`` are documented apart, sent as ``host``)."""
        return tuple(k.rpartition("_")[2] if k.endswith("_host") else k for k in self.query)

    @property
    def checks_query(self) -> bool:
        """The dashboard's page routes itself: its query string is the page's, not fleetd's."""
        return not self.shell

    @property
    def rule(self) -> Rule:
        return Rule(self.access, self.action, shell=self.shell, probe=self.probe, logs=self.logs)


class RouteTable:
    """A module's routes, declared with their metadata by decorators."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def route(
        self,
        method: str,
        path: str,
        access: Access,
        action: str,
        summary: str,
        tag: str,
        *,
        query: tuple[str, ...] = (),
        body: str | None = None,
        ok: int = 200,
        errors: tuple[int, ...] = (),
        logs: bool = False,
        shell: bool = False,
        probe: bool = False,
        response: type[Any] | None = None,
    ) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            self._routes.append(
                Route(
                    method, path, handler, access, action, summary, tag, query, body, ok, errors, logs,
                    shell, probe, response,
                )
            )
            return handler

        return add

    def get(self, path: str, access: Access, action: str, summary: str, tag: str, **kw: object) -> Callable[[Handler], Handler]:
        return self.route("GET", path, access, action, summary, tag, **kw)  # type: ignore[arg-type]

    def post(self, path: str, access: Access, action: str, summary: str, tag: str, **kw: object) -> Callable[[Handler], Handler]:
        return self.route("POST", path, access, action, summary, tag, **kw)  # type: ignore[arg-type]

    def delete(self, path: str, access: Access, action: str, summary: str, tag: str, **kw: object) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, access, action, summary, tag, **kw)  # type: ignore[arg-type]


_VARIABLE = re.compile(r"\{([^}:]*)(:[^}]*)?\}")
_REGEX = re.compile(r"\{([^}:]+):[^}]*\}")


def canonical(path: str) -> str:
    """``/ui/assets/{name:.+}`` → ``/ui/assets/{name}`` (what aiohttp reports as the route's template)."""
    return _REGEX.sub(r"{\1}", path)


def template_key(method: str, template: str) -> tuple[str, str]:
    """``("HEAD", "/a/{name}")`` → ``("GET", "/a/{}")``: HEAD is GET, variable names are irrelevant."""
    method = method.upper()
    return ("GET" if method == "HEAD" else method), _VARIABLE.sub("{}", template)


class RouteIndex:
    """Every registered route, and the rule of a (method, route template)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._rules = {template_key(r.method, r.path): r.rule for r in self.routes}

    def rule_for(self, method: str, template: str) -> Rule | None:
        return self._rules.get(template_key(method, template))

    @property
    def policy(self) -> dict[tuple[str, str], Rule]:
        """(method, route template) → rule, for every route (templates without their regexes)."""
        return {(r.method, canonical(r.path)): r.rule for r in self.routes}


ROUTES = web.AppKey("routes", RouteIndex)


def _checked(route: Route) -> Handler:
    handler, allowed = route.handler, route.params
    if not route.checks_query:
        return handler

    async def checked(request: web.Request) -> web.StreamResponse:
        check_known(request.query, allowed)
        return await handler(request)

    checked.__name__ = getattr(handler, "__name__", "handler")
    return checked


def register(app: web.Application, tables: Iterable[Iterable[Route]]) -> RouteIndex:
    """Add every route of ``tables`` to the app's router, in order; returns (and keeps) the index."""
    routes = [r for table in tables for r in table]
    for r in routes:
        if r.method == "GET":
            app.router.add_get(r.path, _checked(r))  # HEAD too, as aiohttp's RouteTableDef does
        else:
            app.router.add_route(r.method, r.path, _checked(r))
    index = RouteIndex(routes)
    app[ROUTES] = index
    return index
