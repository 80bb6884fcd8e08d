"""``client.images``: list, search, pull, load."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable

from fleetd.dockerapi.errors import EngineHTTPError
from fleetd.dockerapi.models import ImageSearchResult, ImageSummary
from fleetd.dockerapi.stream import ProgressEvent, json_lines
from fleetd.dockerapi.transport import EngineTransport

__all__ = ["ImagesAPI"]


class ImagesAPI:
    def __init__(self, client: EngineTransport) -> None:
        self._client = client

    async def list(self, *, all: bool = False, timeout: float | None = None) -> list[ImageSummary]:
        params: dict[str, str | int] = {"all": 1} if all else {}
        return await self._client.query(
            "GET", "/images/json", list[ImageSummary], params=params, timeout=timeout
        )

    async def search(
        self, term: str, *, limit: int | None = None, timeout: float | None = None
    ) -> builtins.list[ImageSearchResult]:
        params: dict[str, str | int] = {"term": term}
        if limit is not None:
            params["limit"] = limit
        return await self._client.query(
            "GET", "/images/search", list[ImageSearchResult], params=params, timeout=timeout
        )

    async def pull(self, image: str, *, timeout: float | None = None) -> builtins.list[ProgressEvent]:
        """``POST /images/create?fromImage=``. The daemon answers 200 and reports failures inside
        the stream, so the last event's ``error`` is raised as an HTTP-like error."""
        params: dict[str, str | int] = {"fromImage": image}
        last = image.rsplit("/", 1)[-1]
        if "@" not in image and ":" in last:
            params["fromImage"], params["tag"] = image.rsplit(":", 1)
        events: builtins.list[ProgressEvent] = []
        async with self._client.stream("POST", "/images/create", params=params, timeout=timeout) as resp:
            async for event in json_lines(resp.content):
                events.append(event)
        for event in events:
            if event.error:
                raise EngineHTTPError(502, f"pull of {image} failed: {event.error}", url=self._client.url)
        return events

    async def load(
        self, tarball: AsyncIterable[bytes], *, timeout: float | None = None
    ) -> builtins.list[ProgressEvent]:
        """``POST /images/load`` streaming the tarball through, never holding it in memory."""
        events: builtins.list[ProgressEvent] = []
        async with self._client.stream(
            "POST",
            "/images/load",
            params={"quiet": 1},
            data=tarball,
            headers={"Content-Type": "application/x-tar"},
            timeout=timeout,
        ) as resp:
            async for event in json_lines(resp.content):
                events.append(event)
        for event in events:
            if event.error:
                raise EngineHTTPError(400, f"image load failed: {event.error}", url=self._client.url)
        return events
