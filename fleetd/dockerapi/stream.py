"""Decoding Docker's streamed answers: multiplexed logs and JSON-lines progress."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
import msgspec

__all__ = ["LogLine", "ProgressEvent", "demux_log_stream", "json_lines"]

StreamName = Literal["stdin", "stdout", "stderr"]
_STREAMS: dict[int, StreamName] = {0: "stdin", 1: "stdout", 2: "stderr"}


class LogLine(msgspec.Struct, frozen=True):
    stream: Literal["stdin", "stdout", "stderr"]
    line: str


class ProgressEvent(msgspec.Struct, frozen=True):
    status: str = ""
    id: str = ""
    progress: str = ""
    error: str = ""
    message: str = ""
    stream: str = ""  # image load: "Loaded image: name:tag\n"


async def demux_log_stream(content: aiohttp.StreamReader, *, tty: bool) -> AsyncIterator[LogLine]:
    """Split Docker's stream into lines. Non-TTY containers prefix each frame with an 8-byte
    header (stream type, 3 zero bytes, big-endian length); TTY containers send raw bytes."""
    pending: dict[StreamName, bytes] = {"stdout": b"", "stderr": b"", "stdin": b""}

    def lines(stream: StreamName, chunk: bytes) -> list[LogLine]:
        buf = pending[stream] + chunk
        *complete, rest = buf.split(b"\n")
        pending[stream] = rest
        return [LogLine(stream, raw.decode("utf-8", "replace")) for raw in complete]

    if tty:
        async for chunk in content.iter_any():
            for item in lines("stdout", chunk):
                yield item
    else:
        while True:
            try:
                header = await content.readexactly(8)
            except Exception as exc:  # IncompleteReadError at a clean end of stream
                if getattr(exc, "partial", None) == b"" or isinstance(exc, EOFError):
                    break
                raise
            kind, length = struct.unpack(">BxxxL", header)
            payload = await content.readexactly(length) if length else b""
            for item in lines(_STREAMS.get(kind, "stdout"), payload):
                yield item
    for name in ("stdin", "stdout", "stderr"):
        rest = pending[name]
        if rest:
            yield LogLine(name, rest.decode("utf-8", "replace"))


async def json_lines(content: aiohttp.StreamReader) -> AsyncIterator[ProgressEvent]:
    """Docker's progress streams (pull, load): one JSON object per line."""
    decoder = msgspec.json.Decoder(ProgressEvent)
    async for raw in content:
        raw = raw.strip()
        if raw:
            try:
                yield decoder.decode(raw)
            except msgspec.DecodeError:
                yield ProgressEvent(message=raw.decode("utf-8", "replace"))
