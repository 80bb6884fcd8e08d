"""The aiodocker-style Engine API client: one object per daemon, sub-APIs per resource.

    async with DockerClient("unix:///var/run/docker.sock") as docker:
        info = await docker.system.info()
        for c in await docker.containers.list(all=True):
            ...

Every request goes through :meth:`DockerClient.stream`, which negotiates the API
version once, builds the versioned URL, applies the timeout, refuses what no Docker daemon
sends (redirects, compressed bodies) and maps every failure into the error tree of
:mod:`fleetd.dockerapi.errors`. Bodies are read under a per-endpoint cap (:mod:`.limits`).

The version comes from the first answer: dockerd and podman put their newest API version in an
``Api-Version`` header on every answer, and an unversioned request is answered at that version.
So a first ``GET`` goes out unversioned, and when the daemon's version is not above ours (the
version we would have negotiated is then exactly the one it answered at) the answer is used as
it is: no ``/_ping`` round trip before a host's first poll. A daemon newer than us gets the
request again under our version; no header, or a first request that is not a ``GET`` (never
sent twice), negotiates with ``/_ping`` first as the docker CLI does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import msgspec
from yarl import URL

from fleetd.dockerapi.answers import (
    NOT_DOCKER,
    check_json_type,
    decode_answer,
    read_capped,
    read_prefix,
    refuse_unasked,
)
from fleetd.dockerapi.apiversion import (
    CLIENT_API_VERSION,
    MIN_API_VERSION,
    negotiate_version,
    parse_api_version,
)
from fleetd.dockerapi.connections import Endpoint, EngineConnections, TLSConfig, parse_endpoint
from fleetd.dockerapi.errors import DockerError, EngineProtocolError, http_error
from fleetd.dockerapi.failures import map_failure
from fleetd.dockerapi.limits import ReadLimits
from fleetd.dockerapi.models import is_podman_server
from fleetd.dockerapi.ssh_config import SSHOptions
from fleetd.dockerapi.transport import Params, Timeouts

__all__ = ["CLIENT_API_VERSION", "MIN_API_VERSION", "DockerClient", "Timeouts", "negotiate_version"]

T = TypeVar("T")
_URLS_KEPT = 64  # parsed request URLs remembered per client (polls, lists, inspects)


class DockerClient:
    """A client for one daemon. Without ``connections`` it creates and owns its own pool."""

    def __init__(
        self,
        url: str,
        *,
        tls: TLSConfig | None = None,
        ssh: SSHOptions | None = None,
        timeouts: Timeouts | None = None,
        connections: EngineConnections | None = None,
        api_version: str | None = None,
        limits: ReadLimits | None = None,
    ) -> None:
        from fleetd.dockerapi.containers import ContainersAPI
        from fleetd.dockerapi.images import ImagesAPI
        from fleetd.dockerapi.system import SystemAPI

        self.endpoint: Endpoint = parse_endpoint(url, tls, ssh)
        self.timeouts = timeouts or Timeouts()
        #: Caps on answer sizes; may be replaced at any time (a reload), read on every request.
        self.limits = limits or ReadLimits()
        self._owns_connections = connections is None
        self._connections = connections or EngineConnections()
        self._fixed_version = api_version
        self._api_version: str | None = api_version
        self._negotiation: asyncio.Future[str] | None = None
        self._default_timeout: tuple[Timeouts, tuple[aiohttp.ClientTimeout, float]] | None = None
        self._urls: dict[tuple[str, tuple[tuple[str, str | int], ...]], URL] = {}  # see _url
        #: The daemon's ``Server`` header from ``/_ping`` (``Docker/20.10.24 (linux)``,
        #: ``Libpod/4.3.1 (linux)``), once negotiated; None before or when it sends none.
        self.server: str | None = None
        self.system = SystemAPI(self)
        self.containers = ContainersAPI(self)
        self.images = ImagesAPI(self)

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def is_podman(self) -> bool:
        """podman's compatible service (``Server: Libpod/...``): its ``/info`` ID is new on every call."""
        return is_podman_server(self.server)

    @property
    def api_version(self) -> str | None:
        """The negotiated version, or None before the first successful request."""
        return self._api_version

    def forget_version(self) -> None:
        """Negotiate again on the next request (the daemon may have been upgraded)."""
        self._api_version = self._fixed_version

    async def aclose(self) -> None:
        if self._negotiation is not None:
            self._negotiation.cancel()
        if self._owns_connections:
            await self._connections.aclose()

    async def __aenter__(self) -> DockerClient:
        await self._connections.prepare_ssl(self.endpoint)  # off the loop (certificate files)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- version -----------------------------------------------------------------

    async def _ensure_version(self, timeout: float | None) -> str:
        if self._api_version is not None:
            return self._api_version
        # Concurrent first requests share one negotiation, and one failure: a hung daemon
        # costs one timeout, not one per waiting request.
        task = self._negotiation
        if task is None:
            task = self._negotiation = asyncio.ensure_future(self._negotiate(timeout))
            task.add_done_callback(self._negotiation_done)
        return await asyncio.shield(task)

    def _negotiation_done(self, task: asyncio.Future[str]) -> None:
        self._negotiation = None
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is not reported twice

    def _adopt_version(self, resp: aiohttp.ClientResponse) -> bool:
        """Learn the version from an unversioned answer's ``Api-Version`` header. True when the
        answer is at the version negotiated from it (the daemon is not newer than us), so it can
        be used as it is; False when the request must be sent again (versioned, or after
        ``/_ping`` when there was no header). A daemon outside our window raises, as ``/_ping`` does."""
        header = resp.headers.get("Api-Version")
        if not header:
            return False
        version = negotiate_version(header)
        if self._api_version is None:
            self._api_version = version
            self.server = resp.headers.get("Server")
        return parse_api_version(header) <= parse_api_version(version)

    async def _negotiate(self, timeout: float | None) -> str:
        ping = await self.system.ping(timeout=timeout)
        self.server = ping.server
        if ping.api_version:
            version = negotiate_version(ping.api_version)
        else:
            # Very old daemons and some proxies omit the header; /version always has it.
            info = await self.system.version(versioned=False, timeout=timeout)
            version = negotiate_version(info.api_version or None, info.min_api_version or None)
        self._api_version = version
        return version

    # -- requests ------------------------------------------------------------------

    def _describe(self, method: str, path: str) -> str:
        return f"{method} {path} on {self.endpoint.url}"

    def _url(self, full: str, params: Params | None) -> URL:
        """The request URL, parsed and encoded once per path and query (a poll asks the same few)."""
        key = (full, tuple(params.items()) if params else ())
        url = self._urls.get(key)
        if url is None:
            url = URL(self.endpoint.base + full)
            if params:
                url = url.extend_query(params)
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            self._urls[key] = url
        return url

    def _timeout(self, total: float | None, read: float | None = None) -> tuple[aiohttp.ClientTimeout, float]:
        """A longer ``total`` (stop, pull, load) never lengthens the connect timeout."""
        if total is None and read is None:  # every poll: built once per Timeouts in force
            cached = self._default_timeout
            if cached is not None and cached[0] is self.timeouts:
                return cached[1]
            built = self._build_timeout(None, None)
            self._default_timeout = (self.timeouts, built)
            return built
        return self._build_timeout(total, read)

    def _build_timeout(self, total: float | None, read: float | None) -> tuple[aiohttp.ClientTimeout, float]:
        t = total if total is not None else self.timeouts.total
        connect = self.timeouts.connect if self.timeouts.connect is not None else self.timeouts.total
        if t <= 0:  # a stream without an end (/events): only connecting and pauses are bounded
            return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read), connect
        return aiohttp.ClientTimeout(total=t, connect=min(connect, t), sock_read=read), t

    def raise_for_status(self, status: int, body: bytes, method: str, path: str) -> None:
        """Raise the EngineHTTPError a 4xx/5xx answer means, with the daemon's message."""
        message = ""
        try:
            decoded = msgspec.json.decode(body) if body else None
            if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
                message = decoded["message"]
        except (msgspec.DecodeError, RecursionError):
            pass
        if not message:
            text = body[:300].decode("utf-8", "replace").strip()
            message = text or "(no message)"
        raise http_error(status, f"{message} ({self._describe(method, path)})", url=self.endpoint.url)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        versioned: bool = True,
    ) -> tuple[int, bytes]:
        """Send one request and return (status, body) for a 2xx/304 answer; raise otherwise."""
        req_headers = dict(headers or {})
        if json is not None:
            data = msgspec.json.encode(json)
            req_headers["Content-Type"] = "application/json"
        async with self._stream(
            method, path, params=params, data=data, headers=req_headers, timeout=timeout, versioned=versioned
        ) as resp:
            status = resp.status
            body = await read_capped(resp, self.limits, path, self._describe(method, path), self.url)
        return status, body

    async def _json_body(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        timeout: float | None = None,
        versioned: bool = True,
    ) -> bytes:
        """The body of an answer that must be JSON: an empty body or another content type
        (an HTML page from a proxy, a web server on the wrong port) is named, not decoded."""
        data: bytes | None = None
        headers: dict[str, str] = {}
        if json is not None:
            data = msgspec.json.encode(json)
            headers["Content-Type"] = "application/json"
        async with self._stream(
            method, path, params=params, data=data, headers=headers, timeout=timeout, versioned=versioned
        ) as resp:
            where = self._describe(method, path)
            check_json_type(resp, where, self.url)
            body = await read_capped(resp, self.limits, path, where, self.url)
            if not body:
                raise EngineProtocolError(
                    f"{where} answered {resp.status} {resp.reason} with an empty body where JSON was "
                    f"expected: {NOT_DOCKER}",
                    url=self.endpoint.url,
                )
        return body

    def decode(self, body: bytes, type_: type[T], method: str, path: str) -> T:
        """Decode a JSON answer into typed records; any mismatch is a protocol error."""
        return decode_answer(body, type_, self._describe(method, path), self.url)

    async def _query(
        self,
        method: str,
        path: str,
        type_: type[T],
        *,
        params: Params | None = None,
        json: Any = None,
        timeout: float | None = None,
        versioned: bool = True,
    ) -> T:
        body = await self._json_body(
            method, path, params=params, json=json, timeout=timeout, versioned=versioned
        )
        return self.decode(body, type_, method, path)

    @asynccontextmanager
    async def _stream(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        read_timeout: float | None = None,
        versioned: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The one place a request is sent: versioned URL, timeouts, TLS, error mapping.

        ``timeout`` bounds the whole exchange, including reading the body inside the block;
        ``read_timeout`` bounds each pause in a stream. A 4xx/5xx raises before yielding.
        Before the version is known a ``GET`` is sent unversioned and its answer's header
        decides (see the module's docstring); anything else waits for ``/_ping``."""
        client_timeout, t = self._timeout(timeout, read_timeout)
        probe = versioned and self._api_version is None and method == "GET" and self._negotiation is None
        try:
            if probe:
                async with self._send(method, path, params, data, headers, client_timeout, None) as resp:
                    if self._adopt_version(resp):
                        await self._refuse(resp, method, path)
                        yield resp
                        return
                # Answered at a newer version than ours, or without saying which: ask again.
            negotiate_within = timeout if timeout is None or timeout > 0 else None  # /events: no total
            version = await self._ensure_version(negotiate_within) if versioned else None
            async with self._send(method, path, params, data, headers, client_timeout, version) as resp:
                await self._refuse(resp, method, path)
                yield resp
        except DockerError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise map_failure(exc, self._describe(method, path), self.endpoint.url, t) from exc

    def _send(
        self,
        method: str,
        path: str,
        params: Params | None,
        data: Any,
        headers: Mapping[str, str] | None,
        client_timeout: aiohttp.ClientTimeout,
        version: str | None,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        # aiohttp retries an idempotent request once on a fresh connection when a reused
        # keep-alive connection turns out to be dead (RFC 9112 §9.3.1).
        return self._connections.session_for(self.endpoint).request(
            method,
            self._url(f"/v{version}{path}" if version else path, params),
            data=data,
            headers=headers,
            ssl=self._connections.ssl_for(self.endpoint),
            timeout=client_timeout,
            allow_redirects=False,
            auto_decompress=False,  # never asked for; a compressed body is refused below
        )

    async def _refuse(self, resp: aiohttp.ClientResponse, method: str, path: str) -> None:
        refuse_unasked(resp, self._describe(method, path), self.url)
        if resp.status >= 400:
            body = await read_prefix(resp)
            self.raise_for_status(resp.status, body, method, path)

    # The EngineTransport (transport.py) the sub-APIs are written against.
    stream = _stream
    request = _request
    json_body = _json_body
    query = _query
