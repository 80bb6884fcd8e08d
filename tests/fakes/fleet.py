"""Many fake Engines in one process: one aiohttp app, one listening socket per engine.

For example::

    async with FakeFleet(1000, lambda i: EngineBehaviour(seed=i, latency=0.05)) as fleet:
        urls = [engine.url for engine in fleet.engines]

The app picks the engine by the local port a request arrived on.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from .behaviour import EngineBehaviour
from .core import EngineCore
from .engine import bind_loopback, make_app, make_runner

__all__ = ["FakeFleet", "FleetEngine"]


class FleetEngine(EngineCore):
    """One engine of a :class:`FakeFleet`, bound to its own loopback port."""

    def __init__(self, behaviour: EngineBehaviour, host: str, port: int) -> None:
        super().__init__(behaviour)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class FakeFleet:
    """``count`` engines; ``behaviour(i)`` configures engine ``i`` (default: distinct seeds).

    Ports are chosen by the kernel (port 0) unless ``base_port`` is given, then they are
    ``base_port .. base_port + count - 1`` (keep those below 32768, the ephemeral range).
    """

    def __init__(
        self,
        count: int,
        behaviour: Callable[[int], EngineBehaviour] | None = None,
        *,
        host: str = "127.0.0.1",
        base_port: int | None = None,
        backlog: int = 128,
    ) -> None:
        self.count = count
        self.host = host
        self.base_port = base_port
        self.backlog = backlog
        self._behaviour = behaviour or (lambda i: EngineBehaviour(seed=i))
        self.engines: list[FleetEngine] = []
        self._by_port: dict[int, FleetEngine] = {}
        self._runner: web.AppRunner | None = None
        self._closed = False

    def _resolve(self, request: web.Request) -> EngineCore | None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        return self._by_port.get(sockname[1]) if sockname else None

    async def start(self) -> FakeFleet:
        if self._runner is not None:
            raise RuntimeError("fleet already started")
        runner = make_runner(make_app(self._resolve))
        await runner.setup()
        self._runner = runner
        try:
            for i in range(self.count):
                wanted = 0 if self.base_port is None else self.base_port + i
                sock = bind_loopback(self.host, wanted)
                try:
                    await web.SockSite(runner, sock, backlog=self.backlog).start()
                except BaseException:
                    sock.close()
                    raise
                engine = FleetEngine(self._behaviour(i), self.host, sock.getsockname()[1])
                self.engines.append(engine)
                self._by_port[engine.port] = engine
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for engine in self.engines:
            engine.release()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def urls(self) -> list[str]:
        return [engine.url for engine in self.engines]

    @property
    def ports(self) -> list[int]:
        return [engine.port for engine in self.engines]

    async def __aenter__(self) -> FakeFleet:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
