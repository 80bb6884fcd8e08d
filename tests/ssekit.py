"""Reading Server-Sent Events in tests: frames as (id, event, data) with comments kept apart."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Frame:
    id: str | None = None
    event: str = "message"
    data: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None


class SseReader:
    """Parses ``resp.content`` frame by frame (per the WHATWG event-stream rules we rely on)."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.comments: list[str] = []

    async def next(self, timeout: float = 5.0, *, skip_comments: bool = True) -> Frame:
        async with asyncio.timeout(timeout):
            while True:
                f = await self._one()
                if f.data or f.event != "message" or not skip_comments:
                    return f

    async def _one(self) -> Frame:
        f = Frame()
        data: list[str] = []
        while True:
            raw = await self.resp.content.readline()
            if not raw:
                raise EOFError("event stream ended")
            line = raw.decode().rstrip("\n")
            if line == "":
                if data:
                    f.data = json.loads("\n".join(data))
                if data or f.comments or f.retry is not None or f.id is not None:
                    return f
                continue
            if line.startswith(":"):
                f.comments.append(line[1:].strip())
                self.comments.append(line[1:].strip())
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "id":
                f.id = value
            elif key == "event":
                f.event = value
            elif key == "data":
                data.append(value)
            elif key == "retry":
                f.retry = int(value)

    async def frames(self, n: int, timeout: float = 5.0) -> list[Frame]:
        return [await self.next(timeout) for _ in range(n)]

    async def none_within(self, seconds: float) -> None:
        """Fails if a data frame arrives within ``seconds``."""
        try:
            f = await self.next(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {f}")
