"""Decoding Docker's streamed answers: multiplexed logs and JSON-lines progress."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
import msgspec

__all__ = ["MAX_LOG_LINE", "LogLine", "ProgressEvent", "demux_log_stream", "json_lines"]

#: A log line longer than this (bytes) is split: a container writing no newline costs bounded memory.
MAX_LOG_LINE = 256 * 1024

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


async def demux_log_stream(
    content: aiohttp.StreamReader, *, tty: bool, max_line: int = MAX_LOG_LINE
) -> AsyncIterator[LogLine]:
    """Split Docker's stream into lines. Non-TTY containers prefix each frame with an 8-byte
    header (stream type, 3 zero bytes, big-endian length); TTY containers send raw bytes.
    An unfinished line longer than ``max_line`` bytes is emitted in ``max_line`` pieces."""
    pending: dict[StreamName, bytes] = {"stdout": b"", "stderr": b"", "stdin": b""}

    def lines(stream: StreamName, chunk: bytes) -> list[LogLine]:
        buf = pending[stream] + chunk
        *complete, rest = buf.split(b"\n")
        pieces = [raw[i : i + max_line] for raw in complete for i in range(0, max(len(raw), 1), max_line)]
        while len(rest) > max_line:
            pieces.append(rest[:max_line])
            rest = rest[max_line:]
        pending[stream] = rest
        return [LogLine(stream, raw.decode("utf-8", "replace")) for raw in pieces]

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
            stream = _STREAMS.get(kind, "stdout")
            while length:  # in pieces: a frame's length is the daemon's word, up to 4 GiB
                payload = await content.readexactly(min(length, max_line))
                length -= len(payload)
                for item in lines(stream, payload):
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
