"""Schemathesis over the description fleetd serves: every operation, generated inputs, every answer checked.

fleetd runs in process over two fake Engines (containers, images), with an admin token (so every role is
exercised), snapshots on in a temporary database, and serves on 127.0.0.1 port 0 from its own thread and
event loop: schemathesis' calls are blocking, the server keeps answering meanwhile. Each operation gets a
bounded number of generated requests; each answer must be no 5xx, a status the description lists, the
content type it lists, and the body its schema (where it has one). Mutating operations act on the fake
Engines only: they are the test's own, made for this run.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from fleetd.api.app import create_app, route_index
from fleetd.api.openapi import build_spec
from fleetd.config.model import AuthSettings, SnapshotSettings, TokenSettings
from fleetd.runtime import Fleet
from tests.fakes import FakeEngines
from tests.fakes.engine import bind_loopback
from tests.unit import opskit

pytestmark = pytest.mark.slow

TOKEN = f"fleetd-{secrets.token_urlsafe(24)}"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 12

#: Not run, each with its reason (matched against "METHOD /path" as the description spells it).
EXCLUDED = {
    # text/event-stream: an answer that never ends by design (tests/unit/test_sse.py covers it).
    "GET /api/v1/events": "an endless SSE stream",
}
#: Parameters a generated request must not switch on, with the reason.
PINNED_QUERY = {
    "follow": ("false", "follow=1 streams until the container stops: an answer that does not end"),
}

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@schemathesis.serializer("application/x-tar")
def _tarball(_ctx: object, value: object) -> bytes:
    """The image-load body as generated (random bytes, rarely a tarball): fleetd streams it on."""
    return value if isinstance(value, bytes) else str(value).encode()


class ServedFleet:
    """fleetd over fake Engines, served on a loopback port from a thread with its own event loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="served-fleet", daemon=True)

    def __enter__(self) -> ServedFleet:
        self._thread.start()
        if not self._ready.wait(60):
            raise AssertionError("fleetd did not start within 60 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "fleetd did not stop within 60 s"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        engines = FakeEngines()
        try:
            one = await engines(containers=4)
            two = await engines(containers=3)
            token = TokenSettings(name="ci", token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(), role="admin")
            cfg = opskit.settings(
                self.tmp_path,
                [opskit.host("d1", one.url), opskit.host("d2", two.url, labels={"env": "test"})],
                AuthSettings(tokens=(token,)),
            )
            snapshots = SnapshotSettings(enabled=True, path=self.tmp_path / "fleetd.db", interval=3600.0)
            cfg = replace(cfg, snapshots=snapshots)
            async with Fleet(cfg) as fleet:
                assert await fleet.state.wait_ready(30), "the fake hosts were never polled"
                runner = web.AppRunner(create_app(fleet), access_log=None, handle_signals=False)
                await runner.setup()
                try:
                    sock = bind_loopback()
                    self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
                    await web.SockSite(runner, sock).start()
                    self._ready.set()
                    await self._stop.wait()
                finally:
                    await runner.cleanup()
        finally:
            await engines.aclose()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedFleet]:
    with ServedFleet(tmp_path_factory.mktemp("schemathesis")) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def api_schema(served: ServedFleet) -> schemathesis.BaseSchema:
    spec = requests.get(f"{served.url}/api/v1/openapi.json", headers=ADMIN, timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.base_url = served.url  # type: ignore[attr-defined]
    return schema


def _labels() -> list[str]:
    spec = build_spec(route_index().routes)
    return sorted(f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops)


LABELS = _labels()


def test_the_served_description_has_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    served = sorted(f"{op.ok().method.upper()} {op.ok().path}" for op in api_schema.get_all_operations())
    assert served == LABELS and len(LABELS) > 30


@pytest.mark.parametrize("label", LABELS)
def test_every_operation_answers_as_described(
    label: str, api_schema: schemathesis.BaseSchema, served: ServedFleet
) -> None:
    if label in EXCLUDED:
        pytest.skip(EXCLUDED[label])
    method, path = label.split(" ", 1)
    operation = api_schema[path][method.lower()]

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        for name, (value, _reason) in PINNED_QUERY.items():
            if case.query and name in case.query:
                case.query[name] = value
        case.call_and_validate(base_url=served.url, headers=ADMIN, checks=CHECKS, timeout=30)

    run()
