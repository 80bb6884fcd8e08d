"""``client.containers``: list, inspect, create, start/stop/restart/kill, remove, logs."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import msgspec

from fleetd.dockerapi.apiversion import at_least
from fleetd.dockerapi.models import ContainerInspect, ContainerSummary, CreateResult
from fleetd.dockerapi.stream import MAX_LOG_LINE, LogLine, demux_log_stream
from fleetd.dockerapi.transport import EngineTransport

__all__ = ["ContainersAPI"]

_LIST = list[ContainerSummary]
#: What dockerd waits before SIGKILL when neither ``t`` nor the container's StopTimeout says otherwise.
DEFAULT_STOP_WAIT = 10


class ContainersAPI:
    def __init__(self, client: EngineTransport) -> None:
        self._client = client

    async def list(
        self,
        *,
        all: bool = False,
        filters: Mapping[str, list[str]] | None = None,
        timeout: float | None = None,
    ) -> list[ContainerSummary]:
        """``GET /containers/json``. Never asks for ``size`` (it makes the daemon walk layers)."""
        body = await self.list_body(all=all, filters=filters, timeout=timeout)
        return self._client.decode(body, _LIST, "GET", "/containers/json")

    async def list_body(
        self,
        *,
        all: bool = False,
        filters: Mapping[str, builtins.list[str]] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """``GET /containers/json`` undecoded (a poller that skips decoding an unchanged answer);
        an empty or non-JSON answer is refused as in :meth:`list`."""
        params: dict[str, str | int] = {}
        if all:
            params["all"] = 1
        if filters:
            params["filters"] = msgspec.json.encode(dict(filters)).decode()
        return await self._client.json_body("GET", "/containers/json", params=params, timeout=timeout)

    async def inspect(self, container_id: str, *, timeout: float | None = None) -> ContainerInspect:
        return await self._client.query(
            "GET", f"/containers/{container_id}/json", ContainerInspect, timeout=timeout
        )

    async def inspect_raw(self, container_id: str, *, timeout: float | None = None) -> msgspec.Raw:
        """``GET /containers/{id}/json`` exactly as the daemon answered (for people to read)."""
        return await self._client.query(
            "GET", f"/containers/{container_id}/json", msgspec.Raw, timeout=timeout
        )

    async def create(
        self, config: Mapping[str, Any], *, name: str | None = None, timeout: float | None = None
    ) -> CreateResult:
        params: dict[str, str | int] = {"name": name} if name else {}
        return await self._client.query(
            "POST", "/containers/create", CreateResult, params=params, json=dict(config), timeout=timeout
        )

    async def _action(
        self, container_id: str, action: str, params: dict[str, str | int], timeout: float | None
    ) -> bool:
        """True when the daemon acted, False on 304 (already in that state)."""
        status, _ = await self._client.request(
            "POST", f"/containers/{container_id}/{action}", params=params, timeout=timeout
        )
        return status != 304

    def _grace(self, timeout: float | None, t: int | None) -> float:
        """Stopping waits up to ``t`` seconds inside the daemon; the request must outlive that."""
        base = timeout if timeout is not None else self._client.timeouts.total
        return base + (t if t is not None else DEFAULT_STOP_WAIT)

    async def start(self, container_id: str, *, timeout: float | None = None) -> bool:
        return await self._action(container_id, "start", {}, timeout)

    async def stop(self, container_id: str, *, t: int | None = None, timeout: float | None = None) -> bool:
        params: dict[str, str | int] = {"t": t} if t is not None else {}
        return await self._action(container_id, "stop", params, self._grace(timeout, t))

    async def restart(self, container_id: str, *, t: int | None = None, timeout: float | None = None) -> bool:
        params: dict[str, str | int] = {"t": t} if t is not None else {}
        return await self._action(container_id, "restart", params, self._grace(timeout, t))

    async def kill(
        self, container_id: str, *, signal: str | None = None, timeout: float | None = None
    ) -> bool:
        params: dict[str, str | int] = {"signal": signal} if signal else {}
        return await self._action(container_id, "kill", params, timeout)

    async def remove(
        self, container_id: str, *, force: bool = False, v: bool = False, timeout: float | None = None
    ) -> None:
        params: dict[str, str | int] = {"force": int(force), "v": int(v)}
        await self._client.request("DELETE", f"/containers/{container_id}", params=params, timeout=timeout)

    async def logs(
        self,
        container_id: str,
        *,
        tail: int | str | None = None,
        since: int | str | None = None,
        timestamps: bool = False,
        tty: bool = False,
        follow: bool = False,
        max_line: int = MAX_LOG_LINE,
        timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> AsyncGenerator[LogLine, None]:
        """Log lines of a container, demultiplexed; with ``follow`` the stream goes on until the
        container stops (then the daemon ends it) or the caller closes the generator, and
        only connecting (and ``timeout`` is ignored); ``timeout=0`` means
        the same for a plain read, and ``read_timeout`` bounds each pause then. ``tail`` is a count or ``"all"``; ``since`` is Unix
        seconds or ``"<sec>.<nanoseconds>"`` (inclusive). Lines longer than ``max_line`` bytes are
        split, so memory stays bounded whatever the container writes.

        Before API 1.42 the daemon labels both kinds of stream ``raw-stream``, so the caller must
        say whether the container has a TTY (``Config.Tty`` of :meth:`inspect`)."""
        params: dict[str, str | int] = {"stdout": 1, "stderr": 1, "timestamps": int(timestamps)}
        if tail is not None:
            params["tail"] = tail
        if since is not None:
            params["since"] = since
        if follow:
            params["follow"] = 1
        async with self._client.stream(
            "GET",
            f"/containers/{container_id}/logs",
            params=params,
            timeout=0 if follow else timeout,
            read_timeout=read_timeout,
        ) as resp:
            kind = resp.headers.get("Content-Type", "")
            if kind == "application/vnd.docker.multiplexed-stream":
                tty = False
            elif kind == "application/vnd.docker.raw-stream" and at_least(self._client.api_version, 1, 42):
                tty = True
            async for line in demux_log_stream(resp.content, tty=tty, max_line=max_line):
                yield line

