"""Answers no real Docker daemon sends: the hostile faults of a fake Engine.

Each is selected like any other fault (``behaviour.faults["containers"] = Fault.ENDLESS``);
sizes come from :attr:`EngineBehaviour.hostile_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
import zlib

from aiohttp import web

from .behaviour import EngineBehaviour, Fault

__all__ = ["HOSTILE_FAULTS", "gzip_of_spaces", "hostile_answer"]

#: One container summary as dockerd writes it, ~1 KiB: what a huge /containers/json repeats.
_ITEM = (
    b'{"Id":"'
    + b"ab" * 32
    + b'","Names":["/hostile"],"Image":"busybox:latest","ImageID":"sha256:'
    + b"cd" * 32
    + b'","Command":"sleep 1d","Created":1700000000,"Ports":[],"Labels":{"pad":"'
    + b"x" * 600
    + b'"},"State":"running","Status":"Up 2 hours","HostConfig":{"NetworkMode":"bridge"}}'
)
_CHUNK = b",".join([_ITEM] * 1024) + b","  # ~1 MiB

HOSTILE_FAULTS = frozenset(
    {
        Fault.HUGE,
        Fault.ENDLESS,
        Fault.GZIP_BOMB,
        Fault.DEEP_JSON,
        Fault.REDIRECT,
        Fault.HTML_PAGE,
        Fault.NO_CONTENT,
        Fault.NOT_MODIFIED,
        Fault.FOUND_EMPTY,
        Fault.HUGE_HEADER,
        Fault.RESET_MID_BODY,
    }
)


@functools.cache
def gzip_of_spaces(size: int) -> bytes:
    """``[`` + ``size`` spaces + ``]`` gzipped: valid JSON (an empty list) that inflates ~1000×."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    out = [comp.compress(b"[")]
    for _ in range(size >> 20):
        out.append(comp.compress(block))
    out.append(comp.compress(b"]"))
    out.append(comp.flush())
    return b"".join(out)


async def _write_all(response: web.StreamResponse, chunks: int | None, tail: bytes) -> None:
    """``chunks`` × ~1 MiB of items (None: forever), then ``tail``; stops when the client leaves."""
    with contextlib.suppress(ConnectionError, asyncio.CancelledError, RuntimeError):
        await response.write(b"[")
        sent = 0
        while chunks is None or sent < chunks:
            await response.write(_CHUNK)
            sent += 1
        await response.write(tail)
        await response.write_eof()


async def hostile_answer(
    request: web.Request, fault: Fault, behaviour: EngineBehaviour, headers: dict[str, str]
) -> web.StreamResponse:
    size = behaviour.hostile_bytes
    if fault is Fault.HUGE:  # announced with Content-Length, then really sent
        chunks = size // len(_CHUNK)
        tail = _ITEM + b"]"
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/json"
        response.content_length = 1 + chunks * len(_CHUNK) + len(tail)
        await response.prepare(request)
        await _write_all(response, chunks, tail)
        return response
    if fault is Fault.ENDLESS:  # chunked, never ends
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        await _write_all(response, None, b"")
        return response
    if fault is Fault.GZIP_BOMB:
        body = await asyncio.to_thread(gzip_of_spaces, size)
        return web.Response(
            body=body, headers={**headers, "Content-Encoding": "gzip"}, content_type="application/json"
        )
    if fault is Fault.DEEP_JSON:
        return web.Response(
            body=b"[" * 100_000 + b"]" * 100_000, headers=headers, content_type="application/json"
        )
    if fault is Fault.REDIRECT:  # with a JSON body that would parse as data
        return web.Response(
            status=301,
            body=b"[]" if request.path.endswith("/json") else b"{}",
            headers={**headers, "Location": "http://127.0.0.1:9/elsewhere"},
            content_type="application/json",
        )
    if fault is Fault.HTML_PAGE:
        return web.Response(
            text="<html><body><h1>Welcome to nginx!</h1></body></html>",
            headers=headers,
            content_type="text/html",
        )
    if fault is Fault.NO_CONTENT:
        return web.Response(status=204, headers=headers)
    if fault is Fault.NOT_MODIFIED:
        return web.Response(status=304, headers=headers)
    if fault is Fault.FOUND_EMPTY:
        return web.Response(status=302, headers=headers)
    if fault is Fault.HUGE_HEADER:
        return web.json_response({}, headers={**headers, "X-Padding": "x" * 100_000})
    assert fault is Fault.RESET_MID_BODY
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.content_length = 2 * len(_CHUNK)
    await response.prepare(request)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write(b"[" + _CHUNK[:-1])
        await asyncio.sleep(0.05)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:  # SO_LINGER 0: close with a reset, not a FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if request.transport is not None:
        request.transport.abort()
    return response
