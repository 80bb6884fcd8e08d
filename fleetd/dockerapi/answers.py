"""Reading a daemon's answer defensively: caps while reading, and refusing what no daemon sends.

A hostile or broken endpoint (a proxy's HTML page, a redirect, a gzip bomb, an endless body)
becomes an error naming what came, never unbounded memory or a misleading "invalid JSON".
"""

from __future__ import annotations

from typing import TypeVar

import aiohttp
import msgspec

from fleetd.dockerapi.errors import EngineLimitExceeded, EngineProtocolError
from fleetd.dockerapi.limits import ReadLimits, format_size

__all__ = [
    "ERROR_BODY_PREFIX",
    "NOT_DOCKER",
    "check_json_type",
    "decode_answer",
    "payload_reason",
    "read_capped",
    "read_prefix",
    "refuse_unasked",
    "too_deep",
]

T = TypeVar("T")

#: Of an error answer (4xx/5xx) only this much is read: the message is all fleetd shows.
ERROR_BODY_PREFIX = 64 * 1024
NOT_DOCKER = "this does not look like a Docker daemon"


def refuse_unasked(resp: aiohttp.ClientResponse, where: str, url: str) -> None:
    """Redirects are not followed (the next hop could be any server, another daemon) and bodies
    are never inflated (1 MB of gzip can hold 1 GB): both are errors saying what came."""
    status = resp.status
    if 300 <= status < 400 and status != 304:
        resp.close()
        location = resp.headers.get("Location")
        target = f" to {location[:300]}" if location else " without a Location"
        raise EngineProtocolError(
            f"{where} answered {status} {resp.reason}, a redirect{target}; fleetd does not follow "
            "redirects: point the host's url at the daemon itself",
            url=url,
        )
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        resp.close()
        raise EngineProtocolError(
            f"{where} answered with Content-Encoding: {encoding[:40]}, which fleetd never asks for "
            f"and does not inflate: {NOT_DOCKER}",
            url=url,
        )


def check_json_type(resp: aiohttp.ClientResponse, where: str, url: str) -> None:
    """An answer that declares a content type other than JSON is named before it is read."""
    if resp.headers.get("Content-Type") is None:
        return  # some proxies strip it; the decoder still judges the body
    kind = resp.content_type
    if kind in ("application/json", "text/json") or kind.endswith("+json"):
        return
    resp.close()
    raise EngineProtocolError(
        f"{NOT_DOCKER}: {kind[:80]} answer ({resp.status} {resp.reason}) to {where}", url=url
    )


async def read_capped(
    resp: aiohttp.ClientResponse, limits: ReadLimits, path: str, where: str, url: str
) -> bytes:
    """The whole body, stopping as soon as it exceeds the cap for ``path`` (or announces it will)."""
    name, cap = limits.for_path(path)
    length = resp.content_length
    if length is not None and length > cap:
        resp.close()
        raise _too_large(limits, name, cap, where, url, f"announces {length:,} bytes")
    if length is not None:
        # The length is announced and within the cap: the parser stops at it, so one read is bounded.
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > cap:
            resp.close()  # drop the connection: the rest of the answer is never read
            raise _too_large(limits, name, cap, where, url, f"passed {format_size(cap)}")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(
    limits: ReadLimits, name: str, cap: int, where: str, url: str, seen: str
) -> EngineLimitExceeded:
    advice = limits.advice(name)
    return EngineLimitExceeded(
        f"the answer to {where} {seen}, over the {format_size(cap)} cap for {name} answers; "
        "reading stopped" + (f" ({advice})" if advice else ""),
        limit_name=name,
        limit=cap,
        url=url,
    )


async def read_prefix(resp: aiohttp.ClientResponse, limit: int = ERROR_BODY_PREFIX) -> bytes:
    """Up to ``limit`` bytes of the body; the rest is never read (the connection is dropped)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            resp.close()
            break
    return b"".join(chunks)[:limit]


def too_deep(where: str, url: str) -> EngineProtocolError:
    return EngineProtocolError(
        f"the JSON answer to {where} is nested more than ~1,000 levels deep (the decoder's bound): "
        f"{NOT_DOCKER}",
        url=url,
    )


def decode_answer(body: bytes, type_: type[T], where: str, url: str) -> T:
    """A JSON answer decoded into typed records; invalid JSON, a wrong shape or a body nested too
    deep is a protocol error naming ``where``."""
    try:
        return msgspec.json.decode(body, type=type_)
    except RecursionError as exc:
        raise too_deep(where, url) from exc
    except msgspec.ValidationError as exc:
        try:  # typed decoding stops at the first mismatch; is the JSON itself valid?
            msgspec.json.decode(body)
        except RecursionError as deep:
            raise too_deep(where, url) from deep
        except msgspec.DecodeError as bad:
            raise EngineProtocolError(f"invalid JSON from {where}: {bad}", url=url) from bad
        raise EngineProtocolError(f"unexpected answer shape from {where}: {exc}", url=url) from exc
    except msgspec.DecodeError as exc:
        raise EngineProtocolError(f"invalid JSON from {where}: {exc}", url=url) from exc


def payload_reason(exc: aiohttp.ClientPayloadError) -> str:
    """aiohttp's parser errors read "400, message: ..." (a status it made up): keep the message."""
    cause = exc.__cause__ or exc.__context__ or exc
    message = getattr(cause, "message", None)
    text = message if isinstance(message, str) and message.strip() else str(cause)
    text = " ".join(text.split()) or type(cause).__name__
    return text[:200]
