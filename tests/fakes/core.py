"""One fake Engine's request handling, independent of how it is served (port, unix socket, fleet).

Paths work unversioned and under ``/v1.NN``; every request is recorded in :attr:`EngineCore.requests`
before latency, faults and version checks apply, so tests can assert what a client asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from .behaviour import Endpoint, EngineBehaviour, Fault, version_tuple
from .churn import ContainerEvents
from .events import EventLog, serve_events
from .hostile import HOSTILE_FAULTS, hostile_answer
from .model import EngineState, FakeContainer
from .payloads import info_body, search_results, version_body

__all__ = ["EngineCore", "RecordedRequest"]

Json = dict[str, Any]
RecordedRequest = tuple[str, str]  # (method, path with query string)
Handler = Callable[[web.Request, "Route"], Awaitable[web.StreamResponse]]

_VERSIONED: Final = re.compile(r"^/v(?P<version>[0-9]+\.[0-9]+)(?P<rest>/.*)$")
_LIST_ENDPOINTS: Final[frozenset[Endpoint]] = frozenset({"containers", "images", "search"})
_NO_BODY_ENDPOINTS: Final[frozenset[Endpoint]] = frozenset({"start", "stop", "restart", "kill", "remove"})


class Route:
    """The parsed request: which endpoint, which container, which API version."""

    __slots__ = ("endpoint", "ref", "version")

    def __init__(self, endpoint: Endpoint, ref: str, version: str | None) -> None:
        self.endpoint = endpoint
        self.ref = ref
        self.version = version


_ROUTES: Final[tuple[tuple[tuple[str, ...], re.Pattern[str], Endpoint], ...]] = (
    (("GET", "HEAD"), re.compile(r"^/_ping$"), "ping"),
    (("GET",), re.compile(r"^/version$"), "version"),
    (("GET",), re.compile(r"^/info$"), "info"),
    (("GET",), re.compile(r"^/containers/json$"), "containers"),
    (("POST",), re.compile(r"^/containers/create$"), "create"),
    (("GET",), re.compile(r"^/containers/(?P<ref>[^/]+)/json$"), "inspect"),
    (("POST",), re.compile(r"^/containers/(?P<ref>[^/]+)/start$"), "start"),
    (("POST",), re.compile(r"^/containers/(?P<ref>[^/]+)/stop$"), "stop"),
    (("POST",), re.compile(r"^/containers/(?P<ref>[^/]+)/restart$"), "restart"),
    (("POST",), re.compile(r"^/containers/(?P<ref>[^/]+)/kill$"), "kill"),
    (("DELETE",), re.compile(r"^/containers/(?P<ref>[^/]+)$"), "remove"),
    (("GET",), re.compile(r"^/images/json$"), "images"),
    (("GET",), re.compile(r"^/images/search$"), "search"),
    (("POST",), re.compile(r"^/images/create$"), "pull"),
    (("GET",), re.compile(r"^/events$"), "events"),
)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class EngineCore(ContainerEvents):
    """State, behaviour and request log of one fake Engine; ``handle`` answers one request."""

    def __init__(self, behaviour: EngineBehaviour | None = None) -> None:
        self.behaviour = behaviour if behaviour is not None else EngineBehaviour()
        self.state = EngineState.generate(self.behaviour)
        self.requests: list[RecordedRequest] = []
        self.events = EventLog(self.behaviour.product, rotate_at=self.behaviour.events_rotate_at)
        #: The Cookie header of every request that carried one.
        self.cookies: list[str] = []
        #: The X-Registry-Auth header of every request that carried one (pulls).
        self.registry_auths: list[str] = []
        self._closing = asyncio.Event()
        self._handlers: dict[Endpoint, Handler] = {
            "ping": self._ping,
            "version": self._version,
            "info": self._info,
            "containers": self._containers,
            "inspect": self._inspect,
            "create": self._create,
            "start": self._start,
            "stop": self._stop,
            "restart": self._restart,
            "kill": self._kill,
            "remove": self._remove,
            "images": self._images,
            "search": self._search,
            "pull": self._pull,
            "events": self._events,
        }

    # -- test conveniences ------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Regenerate containers and images from the (possibly changed) behaviour."""
        self.state = EngineState.generate(self.behaviour)

    def paths(self) -> list[str]:
        """Recorded request paths (with query strings), in order."""
        return [path for _method, path in self.requests]

    def release(self) -> None:
        """Let hung and slow handlers finish (they drop their connection): called on shutdown."""
        self._closing.set()
        self.events.end_all()

    # -- dispatch ---------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if cookie := request.headers.get("Cookie"):
            self.cookies.append(cookie)
        if registry_auth := request.headers.get("X-Registry-Auth"):
            self.registry_auths.append(registry_auth)
        behaviour = self.behaviour
        path, version = request.rel_url.path, None
        if m := _VERSIONED.match(path):
            path, version = m["rest"], m["version"]
        route = self._route(request.method, path, version)
        if route is None:
            response: web.StreamResponse = _error(404, "page not found")
        else:
            if behaviour.latency > 0:
                await self._pause(behaviour.latency)
            response = await self._answer(request, route)
        self._decorate(response, route)
        return response

    def _route(self, method: str, path: str, version: str | None) -> Route | None:
        for methods, pattern, endpoint in _ROUTES:
            if method in methods and (m := pattern.match(path)):
                return Route(endpoint, m.groupdict().get("ref") or "", version)
        return None

    async def _answer(self, request: web.Request, route: Route) -> web.StreamResponse:
        fault = self.behaviour.fault_for(route.endpoint)
        if fault is Fault.HANG:
            await self._closing.wait()
            return self._drop(request)
        if fault is Fault.CLOSE_CONNECTION:
            return self._drop(request)
        if fault is Fault.STATUS_500:
            return _error(500, f"fake engine: injected failure on {route.endpoint}")
        if fault is Fault.INVALID_JSON:
            return web.Response(body=b'{"Id": "3f2a9c', content_type="application/json")
        if fault is Fault.WRONG_SHAPE:
            return self._wrong_shape(route.endpoint)
        if fault in HOSTILE_FAULTS:
            assert fault is not None
            return await hostile_answer(request, fault, self.behaviour, self._headers(route))
        if fault is Fault.SLOW:
            await self._pause(self.behaviour.slow_seconds)
        if refusal := self._check_version(route.version):
            return refusal
        return await self._handlers[route.endpoint](request, route)

    def _decorate(self, response: web.StreamResponse, route: Route | None) -> None:
        if response.prepared:  # streamed answers set their headers before the first write
            return
        for name, value in self._headers(route).items():
            response.headers[name] = value

    def _headers(self, route: Route | None) -> dict[str, str]:
        behaviour = self.behaviour
        headers = {"Server": behaviour.server_header_value(), "Ostype": behaviour.os_type}
        if (api := behaviour.api_version_header()) is not None:
            headers["Api-Version"] = api
        if behaviour.set_cookie is not None:
            headers["Set-Cookie"] = behaviour.set_cookie
        if route is not None and route.endpoint == "ping":
            headers["Docker-Experimental"] = str(behaviour.experimental).lower()
            headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
            headers["Pragma"] = "no-cache"
            if behaviour.product == "podman":
                headers["Libpod-Api-Version"] = behaviour.server_version
        return headers

    async def _pause(self, seconds: float) -> None:
        """Sleep, but give up as soon as the engine is shutting down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        return web.Response()  # never reaches the client: the transport is closed

    @staticmethod
    def _wrong_shape(endpoint: Endpoint) -> web.Response:
        if endpoint == "ping":
            return web.Response(text="<html>It works!</html>", content_type="text/html")
        if endpoint in _LIST_ENDPOINTS:
            return web.json_response({"items": [], "message": "an object where a list belongs"})
        if endpoint in _NO_BODY_ENDPOINTS:
            return web.json_response([], status=200)
        return web.json_response([{"message": "a list where an object belongs"}])

    def _check_version(self, version: str | None) -> web.Response | None:
        if version is None:
            return None
        behaviour = self.behaviour
        wanted = version_tuple(version)
        if wanted < version_tuple(behaviour.min_api_version):
            return _error(
                400,
                f"client version {version} is too old. Minimum supported API version is "
                f"{behaviour.min_api_version}, please upgrade your client to a newer version",
            )
        if wanted > version_tuple(behaviour.api_version):
            return _error(
                400,
                f"client version {version} is too new. Maximum supported API version is "
                f"{behaviour.api_version}",
            )
        return None

    def _api(self, route: Route) -> tuple[int, int]:
        return version_tuple(route.version or self.behaviour.api_version)

    def _container(self, route: Route) -> FakeContainer | web.Response:
        container = self.state.lookup(route.ref)
        return container if container is not None else _error(404, f"No such container: {route.ref}")

    # -- system -----------------------------------------------------------------------------------

    async def _ping(self, request: web.Request, route: Route) -> web.StreamResponse:
        return web.Response(text="OK")

    async def _version(self, request: web.Request, route: Route) -> web.StreamResponse:
        return web.json_response(version_body(self.behaviour))

    async def _info(self, request: web.Request, route: Route) -> web.StreamResponse:
        return web.json_response(info_body(self.behaviour, self.state))

    async def _events(self, request: web.Request, route: Route) -> web.StreamResponse:
        return await serve_events(request, self.events, self._headers(route))

    # -- containers -------------------------------------------------------------------------------

    async def _containers(self, request: web.Request, route: Route) -> web.StreamResponse:
        query = request.rel_url.query
        selected = list(self.state.containers.values())
        if not _truthy(query.get("all")):
            selected = [c for c in selected if c.running]
        if "filters" in query:
            try:
                filters = json.loads(query["filters"])
                selected = [c for c in selected if _matches(c, filters)]
            except (ValueError, TypeError, AttributeError):
                return _error(400, f"invalid filter '{query['filters']}'")
        selected.sort(key=lambda c: c.created, reverse=True)  # newest first, like dockerd
        limit = query.get("limit", "-1")
        if not limit.lstrip("-").isdigit():
            return _error(400, f"invalid limit {limit!r}")
        if int(limit) > 0:
            selected = selected[: int(limit)]
        now, size = time.time(), _truthy(query.get("size"))
        return web.json_response([c.summary(now, size) for c in selected])

    async def _inspect(self, request: web.Request, route: Route) -> web.StreamResponse:
        found = self._container(route)
        return found if isinstance(found, web.Response) else web.json_response(found.inspect())

    async def _create(self, request: web.Request, route: Route) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid JSON body")
        if not isinstance(body, dict) or not body.get("Image"):
            return _error(400, "Config cannot be empty in order to create a container")
        ref = str(body["Image"])
        image = self.state.find_image(ref)
        if image is None:
            return _error(404, f"No such image: {ref if ':' in ref else ref + ':latest'}")
        name = request.rel_url.query.get("name") or f"fake_{len(self.state.containers)}"
        if not re.fullmatch(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):
            return _error(400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        name = name.removeprefix("/")
        if (other := self.state.lookup(name)) is not None and other.name == name:
            return _error(
                409,
                f'Conflict. The container name "/{name}" is already in use by container "{other.id}". '
                "You have to remove (or rename) that container to be able to reuse that name.",
            )
        container = self.state.create(name, image, ref, body, time.time())
        self.emit(container, "create")
        return web.json_response({"Id": container.id, "Warnings": []}, status=201)

    async def _start(self, request: web.Request, route: Route) -> web.StreamResponse:
        found = self._container(route)
        if isinstance(found, web.Response):
            return found
        if found.running:
            return web.Response(status=304)
        found.state, found.started_at, found.exit_code = "running", time.time(), 0
        self.emit(found, "start")
        return web.Response(status=204)

    async def _stop(self, request: web.Request, route: Route) -> web.StreamResponse:
        found = self._container(route)
        if isinstance(found, web.Response):
            return found
        if not found.running:
            return web.Response(status=304)
        found.state, found.finished_at, found.exit_code = "exited", time.time(), 0
        self._emit_died(found, "15")
        self.emit(found, "stop")
        return web.Response(status=204)

    async def _restart(self, request: web.Request, route: Route) -> web.StreamResponse:
        found = self._container(route)
        if isinstance(found, web.Response):
            return found
        if found.running:
            found.exit_code = 0
            self._emit_died(found, "15")
            self.emit(found, "stop")
        found.state, found.started_at, found.exit_code = "running", time.time(), 0
        self.emit(found, "start")
        self.emit(found, "restart")
        return web.Response(status=204)

    async def _kill(self, request: web.Request, route: Route) -> web.StreamResponse:
        found = self._container(route)
        if isinstance(found, web.Response):
            return found
        if not found.running:
            return _error(409, f"Cannot kill container: {route.ref}: Container {found.id} is not running")
        found.state, found.finished_at, found.exit_code = "exited", time.time(), 137
        self._emit_died(found, "9")
        return web.Response(status=204)

    async def _remove(self, request: web.Request, route: Route) -> web.StreamResponse:
        found = self._container(route)
        if isinstance(found, web.Response):
            return found
        if found.running and not _truthy(request.rel_url.query.get("force")):
            return _error(
                409,
                f"You cannot remove a running container {found.id}. "
                "Stop the container before attempting removal or force remove",
            )
        if found.running:
            found.state, found.exit_code = "exited", 137
            self._emit_died(found, "9")
        del self.state.containers[found.id]
        self.emit(found, "remove" if self.behaviour.product == "podman" else "destroy")
        return web.Response(status=204)

    # -- images -----------------------------------------------------------------------------------

    async def _images(self, request: web.Request, route: Route) -> web.StreamResponse:
        api = self._api(route)
        images = sorted(self.state.images.values(), key=lambda i: i.created, reverse=True)
        return web.json_response([image.summary(api) for image in images])

    async def _search(self, request: web.Request, route: Route) -> web.StreamResponse:
        query = request.rel_url.query
        term = query.get("term", "")
        if not term:
            return _error(400, "term is required")  # dockerd would ask the registry with q=""
        limit = query.get("limit", "25")
        if not limit.isdigit():
            return _error(400, f"invalid limit {limit!r}")
        return web.json_response(search_results(term, int(limit)))

    async def _pull(self, request: web.Request, route: Route) -> web.StreamResponse:
        query = request.rel_url.query
        name, tag = query.get("fromImage", ""), query.get("tag", "")
        if not name:
            return _error(400, "fake engine: only pulls (fromImage=...) are supported")
        if ":" in name.rsplit("/", 1)[-1] and not tag:
            name, tag = name.rsplit(":", 1)
        ref = f"{name}:{tag or 'latest'}"
        if ref in self.behaviour.unpullable or name in self.behaviour.unpullable:
            return _error(
                404,
                f"pull access denied for {name}, repository does not exist or may require 'docker login': "
                "denied: requested access to the resource is denied",
            )
        response = web.StreamResponse(headers=self._headers(route))
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        image = self.state.add_image(ref)
        layer = image.id[7:19]
        total = image.size
        lines: list[Json] = [
            {"status": f"Pulling from {name if '/' in name else 'library/' + name}", "id": tag or "latest"},
            {"status": "Pulling fs layer", "progressDetail": {}, "id": layer},
        ]
        for done in (total // 4, total // 2, total):
            bar = "=" * (50 * done // total)
            lines.append(
                {
                    "status": "Downloading",
                    "progressDetail": {"current": done, "total": total},
                    "progress": f"[{bar}>{' ' * (50 - len(bar))}]",
                    "id": layer,
                }
            )
        lines += [
            {"status": "Download complete", "progressDetail": {}, "id": layer},
            {"status": "Pull complete", "progressDetail": {}, "id": layer},
            {"status": f"Digest: sha256:{image.id[7:]}"},
            {"status": f"Status: Downloaded newer image for {ref}"},
        ]
        for line in lines:
            await response.write(json.dumps(line).encode() + b"\r\n")
            await asyncio.sleep(0)
        await response.write_eof()
        return response


def _matches(container: FakeContainer, filters: dict[str, Any]) -> bool:
    """The ``filters`` query of GET /containers/json: label (all must match), status, name, id (any)."""
    for key, raw in filters.items():
        values = list(raw) if isinstance(raw, list) else [k for k, on in raw.items() if on]
        if key == "label":
            ok = all(
                container.labels.get(k) == v if sep else k in container.labels
                for k, sep, v in (value.partition("=") for value in values)
            )
        elif key == "status":
            ok = container.state in values
        elif key == "name":
            ok = any(re.search(value, container.name) for value in values)
        elif key == "id":
            ok = any(container.id.startswith(value) for value in values)
        else:
            raise ValueError(key)
        if not ok:
            return False
    return True
