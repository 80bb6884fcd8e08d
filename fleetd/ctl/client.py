"""The HTTP client of the command line: one aiohttp session per command, errors turned into sentences.

    async with FleetClient(endpoint) as api:
        body, headers = await api.get("/api/v1/containers", [("state", "running")])
        async for line in api.lines("/api/v1/logs", [("follow", "1")], role="operator"): ...

Every request says which role it needs, so a refusal can tell the user which token to use.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Final

import aiohttp
from multidict import CIMultiDictProxy

from fleetd.ctl.connect import Endpoint
from fleetd.ctl.errors import ApiFailure, CtlError, Unreachable

__all__ = ["FleetClient", "Params"]

Params = Sequence[tuple[str, str]]

REQUEST_TIMEOUT: Final = 30.0
#: Batch actions stop containers with their grace period, many in turn: let them take their time.
ACTION_TIMEOUT: Final = 600.0
CONNECT_TIMEOUT: Final = 10.0
LINE_LIMIT: Final = 4 * 1024 * 1024  # one NDJSON/SSE line (a container object, a log line)


class FleetClient:
    """One fleetd API over one ``aiohttp.ClientSession``; ``aclose()`` is safe to call twice."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FleetClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.endpoint.insecure:
            return False
        if self.endpoint.cacert is not None:
            return ssl.create_default_context(cafile=str(self.endpoint.cacert))
        return True

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"User-Agent": "fleetd-cli", "Accept": "application/json"}
            if self.endpoint.token:
                headers["Authorization"] = f"Bearer {self.endpoint.token}"
            self._session = aiohttp.ClientSession(
                self.endpoint.url,
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=20),
                read_bufsize=LINE_LIMIT,
            )
        return self._session

    # -- plain requests ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        params: Params = (),
        *,
        body: Any = None,
        role: str = "viewer",
        timeout: float = REQUEST_TIMEOUT,
        accept: str = "application/json",
    ) -> tuple[bytes, CIMultiDictProxy[str]]:
        """The body and headers of a 2xx answer; ApiFailure / Unreachable otherwise."""
        limits = aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(
                method, path, params=list(params), data=data, headers=headers, timeout=limits
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise self._failure(resp.status, resp.content_type, raw, method, path, role)
                return raw, resp.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc, timeout) from None

    async def get(
        self, path: str, params: Params = (), *, role: str = "viewer"
    ) -> tuple[Any, dict[str, str]]:
        raw, headers = await self.request("GET", path, params, role=role)
        return self._decode(raw, path), dict(headers)

    async def json(
        self,
        method: str,
        path: str,
        params: Params = (),
        *,
        body: Any = None,
        role: str = "viewer",
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        raw, _ = await self.request(method, path, params, body=body, role=role, timeout=timeout)
        return self._decode(raw, path)

    def _decode(self, raw: bytes, path: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise CtlError(
                f"{self.endpoint.url}{path} did not answer JSON; is {self.endpoint.url} a fleetd?"
            ) from None

    # -- streams -------------------------------------------------------------------------------

    async def lines(
        self, path: str, params: Params = (), *, role: str = "viewer", accept: str = "application/x-ndjson"
    ) -> AsyncIterator[bytes]:
        """Each line of a streamed answer (NDJSON, SSE) as it arrives, without the newline."""
        limits = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        try:
            async with self._http().get(
                path, params=list(params), headers={"Accept": accept}, timeout=limits
            ) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    raise self._failure(resp.status, resp.content_type, raw, "GET", path, role)
                while True:
                    line = await resp.content.readline()
                    if not line:
                        return
                    yield line.rstrip(b"\r\n")
        except ValueError as exc:  # a line beyond LINE_LIMIT
            raise CtlError(f"{path}: {exc}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc, None) from None

    # -- failures as sentences -----------------------------------------------------------------

    def _unreachable(self, exc: BaseException, timeout: float | None) -> CtlError:
        ep = self.endpoint
        where = f"fleetd at {ep.url} ({ep.source})"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return Unreachable(
                f"the TLS certificate of {where} is not trusted: {exc.certificate_error}; "
                "give --cacert FILE (the CA of fleetd's listen_tls certificate) or, for a test, --insecure"
            )
        if isinstance(exc, aiohttp.ClientSSLError):
            return Unreachable(f"TLS with {where} failed: {exc}; is it serving HTTPS (listen_tls)?")
        if isinstance(exc, aiohttp.ClientConnectorError):
            err = exc.os_error
            reason = os.strerror(err.errno) if err.errno else (err.strerror or str(err))
            return Unreachable(
                f"cannot connect to {where}: {reason.lower()}. Is fleetd running? Start it with "
                "`fleetd run --config FILE`, or point --url / FLEETD_URL at it"
            )
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return Unreachable(f"{where} closed the connection: {exc}")
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return Unreachable(f"{where} did not answer within {timeout or CONNECT_TIMEOUT:g}s")
        if isinstance(exc, aiohttp.InvalidURL):
            return CtlError(f"{ep.source}: invalid URL {ep.url!r}")
        return Unreachable(f"{where}: {exc or type(exc).__name__}")

    def _failure(
        self, status: int, content_type: str, raw: bytes, method: str, path: str, role: str
    ) -> ApiFailure:
        body: dict[str, Any] = {}
        if content_type == "application/json":
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                body = decoded
        err = body.get("error") if isinstance(body.get("error"), dict) else None
        if err is None:
            return ApiFailure(
                f"{method} {self.endpoint.url}{path}: HTTP {status} without fleetd's error body; "
                f"is {self.endpoint.url} a fleetd?",
                status=status,
                code="not_fleetd",
            )
        code, message = str(err.get("code", "error")), str(err.get("message", ""))
        ep = self.endpoint
        if status == 401:
            if ep.token is None:
                message = (
                    f"{message}. This command needs a token with role {role} (or higher): "
                    "give --token-file FILE or set FLEETD_TOKEN"
                )
            else:
                message = f"fleetd refused the token from {ep.token_source}: {message}"
        elif status == 403 and code == "insufficient_role":
            message = f"permission denied: {message} (give a token of role {role} or higher)"
        elif status == 404 and code == "not_found":
            message = f"{message}; this fleetd does not serve {path} (an older version?)"
        elif status == 400 and code == "unknown_parameter" and "'follow'" in message:
            message = f"this fleetd cannot follow logs ({message}); it needs a newer fleetd"
        return ApiFailure(message, status=status, code=code, body=body)
