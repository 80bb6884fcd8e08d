"""A fake Docker Engine served by aiohttp on a loopback port (or a unix socket) for tests.

For example::

    async with FakeEngine(docker_29(containers=5)) as eng:
        client = DockerClient(eng.url)            # "tcp://127.0.0.1:PORT"
        ...
        assert all(path.startswith("/v1.51/") for path in eng.paths()[1:])
        eng.behaviour.faults["info"] = Fault.HANG  # from now on /info never answers

Closing the engine releases hung handlers first, so a hang never delays shutdown.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

from aiohttp import web

from .behaviour import EngineBehaviour
from .core import EngineCore

__all__ = ["FakeEngine", "FakeEngines", "bind_loopback", "make_app", "make_runner"]

#: How long aiohttp waits for in-flight handlers on shutdown once hung ones were released.
SHUTDOWN_TIMEOUT = 2.0


def make_app(resolve: Callable[[web.Request], EngineCore | None]) -> web.Application:
    """One catch-all route: ``resolve`` picks the engine that answers a request."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        engine = resolve(request)
        if engine is None:
            return web.json_response({"message": "no fake engine behind this socket"}, status=500)
        return await engine.handle(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    # handler_cancellation: a client that gives up (timeout) cancels its hung handler.
    return web.AppRunner(app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=None)


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound (not yet listening) TCP socket; refuses anything but a loopback address."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"fake engines only listen on loopback, not {host}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class FakeEngine(EngineCore):
    """An :class:`EngineCore` with its own server: ``async with FakeEngine(...) as eng``."""

    def __init__(
        self,
        behaviour: EngineBehaviour | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(behaviour)
        self.host = host
        self._wanted_port = port
        self.unix_path = os.fspath(unix_path) if unix_path is not None else None
        if self.unix_path is not None and len(os.fsencode(self.unix_path)) >= 108:
            raise ValueError(f"unix socket path too long (max 107 bytes): {self.unix_path}")
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closed = False

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("engine not started, or it listens on a unix socket")
        return self._port

    @property
    def url(self) -> str:
        """``tcp://127.0.0.1:PORT`` or ``unix:///path``, the way fleetd's inventory spells hosts."""
        if self.unix_path is not None:
            return f"unix://{os.path.abspath(self.unix_path)}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` for a plain aiohttp client (TCP engines only)."""
        return self.url.replace("tcp://", "http://", 1)

    async def start(self) -> FakeEngine:
        if self._runner is not None:
            raise RuntimeError("engine already started")
        runner = make_runner(make_app(lambda _request: self))
        await runner.setup()
        self._runner = runner
        try:
            if self.unix_path is not None:
                await web.UnixSite(runner, self.unix_path).start()
            else:
                sock = bind_loopback(self.host, self._wanted_port)
                self._port = sock.getsockname()[1]
                await web.SockSite(runner, sock).start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        """Stop serving; safe to call twice. Hung handlers drop their connections first."""
        if self._closed:
            return
        self._closed = True
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)

    async def __aenter__(self) -> FakeEngine:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class FakeEngines:
    """Starts any number of engines and closes them all at once (the ``fake_engine`` fixture).

    Engines made without a behaviour get distinct seeds, hence distinct containers.
    """

    def __init__(self, first_seed: int = 1) -> None:
        self.engines: list[FakeEngine] = []
        self._next_seed = first_seed

    async def __call__(
        self,
        behaviour: EngineBehaviour | None = None,
        *,
        unix_path: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> FakeEngine:
        """A started engine; ``overrides`` are EngineBehaviour fields (``latency=0.2``, ...)."""
        if behaviour is None:
            overrides.setdefault("seed", self._next_seed)
            self._next_seed += 1
            behaviour = EngineBehaviour(**overrides)
        elif overrides:
            behaviour = replace(behaviour, **overrides)
        engine = FakeEngine(behaviour, unix_path=unix_path)
        self.engines.append(engine)
        return await engine.start()

    async def aclose(self) -> None:
        for engine in reversed(self.engines):
            await engine.aclose()
