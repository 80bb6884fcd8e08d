"""Helpers for the operations tests: an app with tokens over fake Engines, and an audit database."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from fleetd.config.model import (
    AuthSettings,
    HostSettings,
    PollSettings,
    Role,
    Settings,
    SnapshotSettings,
    TokenSettings,
)
from fleetd.runtime import Fleet
from tests.harness import FleetClient, fleet_client

T = TypeVar("T")

# The same table as the database's migration 1 (fleetd/store/schema.py).
AUDIT_DDL = """CREATE TABLE audit (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, role TEXT, action TEXT NOT NULL,
    method TEXT, path TEXT, targets TEXT, outcome TEXT NOT NULL, status INTEGER, detail TEXT, client TEXT
)"""


class ThreadDatabase:
    """A stand-in for fleetd.store.db.Database: one sqlite file, calls run in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.execute(AUDIT_DDL)
        self.lock = threading.Lock()
        self.calls = 0

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert threading.current_thread() is not threading.main_thread(), "sqlite on the event loop"
        with self.lock:
            self.calls += 1
            return fn(self.conn, *args)

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        return await asyncio.to_thread(self._call, fn, args)

    async def read(self, fn: Callable[..., T], /, *args: Any) -> T:
        return await asyncio.to_thread(self._call, fn, args)

    def rows(self) -> list[dict[str, Any]]:
        with self.lock:
            cur = self.conn.execute("SELECT * FROM audit ORDER BY id")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()


class Tokens:
    """Random tokens by role; the settings hold only their SHA-256."""

    def __init__(self, **roles: Role) -> None:
        self.by_name = {name: f"fleetd-{secrets.token_urlsafe(24)}" for name in roles}
        self.roles = roles

    def auth(self, **flags: bool) -> AuthSettings:
        tokens = tuple(
            TokenSettings(name=n, token_sha256=hashlib.sha256(t.encode()).hexdigest(), role=self.roles[n])
            for n, t in self.by_name.items()
        )
        return AuthSettings(tokens=tokens, **flags)

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.by_name[name]}"}


def host(name: str, url: str, **kw: Any) -> HostSettings:
    return HostSettings(
        name=name, url=url, interval=kw.pop("interval", 30.0), timeout=kw.pop("timeout", 1.0), **kw
    )


def settings(
    tmp_path: Path, hosts: list[HostSettings], auth: AuthSettings | None = None, **kw: Any
) -> Settings:
    return Settings(
        path=tmp_path / "fleetd.yaml",
        poll=PollSettings(interval=30.0, timeout=1.0, max_backoff=1.0, images_every=1000),
        hosts=tuple(hosts),
        snapshots=SnapshotSettings(enabled=False, path=tmp_path / "fleetd.db"),
        auth=auth or AuthSettings(),
        **kw,
    )


async def start_client(cfg: Settings, *, db: ThreadDatabase | None = None, ready: bool = True) -> FleetClient:
    """fleetd over ``cfg``, its audit rows in ``db`` when given (else in fleetd's own database)."""
    return await fleet_client(Fleet(cfg, audit_sql=db), ready=ready)


EngineHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ScriptedEngine:
    """A minimal Engine on a loopback port whose answers the test writes, for what FakeEngine lacks
    (logs, image load, registry failures). Polls get an empty host; ``on`` adds or overrides routes."""

    def __init__(self, api_version: str = "1.41") -> None:
        self.api_version = api_version
        self.requests: list[tuple[str, str]] = []
        self._routes: list[tuple[str, re.Pattern[str], EngineHandler]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        empty = web.json_response
        self.on("GET", "/_ping", lambda r: _answer(web.Response(text="OK")))
        self.on("GET", "/info", lambda r: _answer(empty({"ID": "scripted", "ServerVersion": "20.10.24"})))
        self.on("GET", "/containers/json", lambda r: _answer(empty([])))
        self.on("GET", "/images/json", lambda r: _answer(empty([])))

    def on(self, method: str, pattern: str, handler: EngineHandler) -> None:
        self._routes.insert(0, (method, re.compile(pattern + "$"), handler))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        path = re.sub(r"^/v[0-9]+\.[0-9]+", "", request.path)
        for method, pattern, handler in self._routes:
            if method == request.method and pattern.match(path):
                response = await handler(request)
                if not response.prepared:
                    response.headers["Api-Version"] = self.api_version
                return response
        return web.json_response({"message": "page not found"}, status=404)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedEngine:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _answer(response: web.StreamResponse) -> web.StreamResponse:
    return response
