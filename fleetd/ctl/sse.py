"""Server-sent events (the WHATWG event-stream format), read line by line into frames."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fleetd.ctl.client import FleetClient, Params
from fleetd.ctl.errors import CtlError

__all__ = ["Frame", "FrameParser", "fleet_events"]


@dataclass(frozen=True, slots=True)
class Frame:
    event: str
    data: str
    id: str | None

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.data)
        except ValueError:
            raise CtlError(f"event {self.event!r}: its data is not JSON: {self.data[:80]!r}") from None
        if not isinstance(value, dict):
            raise CtlError(f"event {self.event!r}: expected a JSON object, got {self.data[:80]!r}")
        return value


class FrameParser:
    """``feed`` one line (without its newline) at a time; a blank line completes a frame."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.last_id: str | None = None

    def feed(self, line: str) -> Frame | None:
        if not line:
            if not self._data and not self._event:
                return None
            frame = Frame(self._event or "message", "\n".join(self._data), self._id)
            self._data, self._event, self._id = [], "", None
            return frame
        if line.startswith(":"):
            return None  # a comment, e.g. ": ping"
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
            self.last_id = value
        return None


async def fleet_events(
    api: FleetClient, params: Params, on_open: Callable[[], None] | None = None
) -> AsyncIterator[Frame]:
    """The frames of ``GET /api/v1/events`` as they arrive; ``on_open`` once the stream is open."""
    parser = FrameParser()
    opened = False
    async for raw in api.lines("/api/v1/events", params, accept="text/event-stream"):
        if not opened and on_open is not None:
            on_open()  # the server's first line ("retry:", a comment): subscribed
        opened = True
        frame = parser.feed(raw.decode("utf-8", errors="replace"))
        if frame is not None:
            yield frame
