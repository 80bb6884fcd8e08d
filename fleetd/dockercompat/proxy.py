"""Forwarding one call to the daemon that owns its target, answer streamed back untouched.

Headers go out as soon as the daemon's arrive (``docker run`` blocks on ``/wait``'s headers);
streamed bodies (logs, stats, wait, pulls) are relayed chunk by chunk, chunked, never re-framed.
Only a small allowlist of request headers travels upstream: never the caller's Authorization,
and ``X-Registry-Auth`` untouched and never logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from fleetd.dockercompat.errors import DockerAPIError
from fleetd.dockercompat.upstream import Upstream

__all__ = ["FORWARDED_HEADERS", "SENT_STATUS", "forward", "upstream_error"]

#: The status of a streamed answer once its headers went out (for the audit of a call whose
#: client leaves before the call ends, which is how every stream ends).
SENT_STATUS = web.RequestKey("docker_sent_status", int)

FORWARDED_HEADERS = ("Content-Type", "X-Registry-Auth", "X-Registry-Config")
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length", "Upgrade", "Server", "Date",
        "Api-Version", "Docker-Experimental", "Ostype", "Content-Encoding", "Proxy-Connection",
    )
)
ERROR_BODY_MAX = 64 * 1024
BODY_MAX = 32 * 1024 * 1024


def request_headers(request: web.Request, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
    if extra:
        headers.update(extra)
    return headers


async def upstream_error(resp: aiohttp.ClientResponse, host: str) -> DockerAPIError:
    """The daemon's own message and status, re-sent with exactly ``application/json``."""
    body = await resp.content.read(ERROR_BODY_MAX)
    message = ""
    try:
        doc = msgspec.json.decode(body) if body else None
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            message = doc["message"]
    except msgspec.DecodeError:
        pass
    if not message:
        message = body.decode("utf-8", "replace").strip() or f"HTTP {resp.status} from host {host}"
    return DockerAPIError(resp.status, message)


def _copy_headers(resp: aiohttp.ClientResponse, out: web.StreamResponse) -> None:
    for key, value in resp.headers.items():
        if key.lower() not in _HOP_BY_HOP:
            out.headers[key] = value


async def forward(
    request: web.Request,
    up: Upstream,
    path: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    query: str | None = None,
    stream: bool = False,
    timeout: float | None = None,
) -> web.StreamResponse:
    """Send ``request`` to ``up`` at ``path`` (already versioned) and relay the answer.

    ``stream``: no total timeout, and the body is relayed as it comes (chunked)."""
    try:
        async with up.request(
            request.method,
            path,
            query=request.query_string if query is None else query,
            data=body,
            headers=headers if headers is not None else request_headers(request),
            timeout=timeout,
            stream=stream,
        ) as resp:
            if resp.status >= 400:
                raise await upstream_error(resp, up.host)
            if not stream:
                # Buffered, so the caller can re-read the host before the client sees the answer.
                data = await resp.content.read(BODY_MAX + 1)
                if len(data) > BODY_MAX:
                    raise DockerAPIError(502, f"host {up.host} sent more than {BODY_MAX} bytes")
                plain = web.Response(status=resp.status, body=data or None)
                _copy_headers(resp, plain)
                if not data:
                    plain.headers.pop("Content-Type", None)
                return plain
            out = web.StreamResponse(status=resp.status)
            _copy_headers(resp, out)
            if resp.status not in (204, 304):
                out.enable_chunked_encoding()
            await out.prepare(request)  # headers now, before any body
            request[SENT_STATUS] = out.status
            try:
                async for chunk in resp.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                pass  # the headers are out: the stream just ends, as the daemon's did
            return out
    except DockerAPIError:
        raise
    except TimeoutError:
        raise DockerAPIError(504, f"host {up.host} did not answer {request.method} {path} in time") from None
    except aiohttp.ClientError as exc:
        raise DockerAPIError(502, f"host {up.host}: {exc.__class__.__name__}: {exc}") from None
