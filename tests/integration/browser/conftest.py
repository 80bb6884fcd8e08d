"""Browser fixtures: Debian's Chromium driven by Playwright, and fleetd in front of the lab's real
dockerd daemons plus fake Engines (one healthy, one that goes down, one answering errors).

Skipped with the reason when Chromium or Playwright is missing, unless FLEETD_REQUIRE_DOCKER=1 (CI): then
the tests fail. Every page's console errors and uncaught exceptions fail the test that caused them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleetd.config.model import HostSettings, PollSettings, Settings, SnapshotSettings
from tests.fakes import FakeEngine, Fault, docker_20_10, docker_29
from tests.integration.browser.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Background,
    Served,
    browser_unavailable_reason,
    serve,
)
from tests.integration.lab import DockerLab
from tests.unit.opskit import Tokens

REQUIRE = "FLEETD_REQUIRE_DOCKER"
INTERVAL = 0.5  # fleetd polls fast here, so the page's refresh (which follows it) is fast too
TIMEOUT = 0.4
DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE, "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (failing instead of skipping because {REQUIRE}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Playwright's sync API runs an event loop on this thread while it lives: module scope, so the
    async tests collected after these never see it."""
    if reason := browser_unavailable_reason():
        _unavailable(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Dashboard:
    served: Served
    bg: Background
    lab: DockerLab
    tokens: Tokens
    fakes: dict[str, FakeEngine]
    made: list[tuple[str, str]] = field(default_factory=list)  # (daemon, container) to remove

    @property
    def url(self) -> str:
        return self.served.url

    def token(self, name: str) -> str:
        return self.tokens.by_name[name]


def _host(name: str, url: str, *, enabled: bool = True, **labels: str) -> HostSettings:
    return HostSettings(
        name=name, url=url, labels=labels, interval=INTERVAL, timeout=TIMEOUT, enabled=enabled
    )


@pytest.fixture(scope="module")
def dashboard(docker_lab: DockerLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    tmp = tmp_path_factory.mktemp("dashboard")
    bg = Background()
    fakes: dict[str, FakeEngine] = {}
    served: Served | None = None
    try:
        fakes["fake-up"] = bg.run(FakeEngine(docker_29(containers=3, seed=7, engine_id="FAKE:UP")).start())
        fakes["fake-down"] = bg.run(
            FakeEngine(docker_20_10(containers=2, seed=8, engine_id="FAKE:DOWN")).start()
        )
        erring = docker_29(containers=1, seed=9, engine_id="FAKE:ERR", faults={"info": Fault.STATUS_500})
        fakes["fake-error"] = bg.run(FakeEngine(erring).start())
        d = docker_lab.daemons
        hosts = (
            _host("d1", d["d1"].tcp_url, env="prod", rack="r1"),
            _host("d2", d["d2"].tcp_url, env="prod", rack="r2"),
            *(_host(name, fakes[name].url, env="staging", rack="r3") for name in fakes),
            _host("old-box", "tcp://127.0.0.1:9", enabled=False, env="staging"),
        )
        tokens = Tokens(watcher="viewer", ci="operator")
        settings = Settings(
            path=tmp / "fleetd.yaml",
            poll=PollSettings(interval=INTERVAL, timeout=TIMEOUT, max_backoff=1.0),
            hosts=hosts,
            snapshots=SnapshotSettings(enabled=True, path=tmp / "fleetd.db", interval=3600.0),
            auth=tokens.auth(),
        )
        served = bg.run(serve(settings))
        board = Dashboard(served, bg, docker_lab, tokens, fakes)
        yield board
        for daemon, name in board.made:
            if docker_lab.daemons[daemon].running:
                docker_lab.daemons[daemon].docker("rm", "--force", name, check=False)
    finally:
        if served is not None:
            bg.run(served.aclose())
        for engine in fakes.values():
            bg.run(engine.aclose())
        bg.close()


class ConsoleErrors(list[str]):
    pass


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context at 1280×800; fails the test on any console error or page exception."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    errors = ConsoleErrors()
    p.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    p.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    p.errors = errors
    try:
        yield p
        assert list(errors) == [], f"the browser reported errors: {errors}"
    finally:
        context.close()


def sign_in(page: Any, board: Dashboard, who: str, path: str = "/") -> None:
    """Opens ``path``, signs in with ``who``'s token through the dialog, waits for the page to say so."""
    page.goto(board.url + path)
    page.locator("#signin-token").fill(board.token(who))
    page.locator("#signin-token").press("Enter")
    page.locator("#who").filter(has_text=who).wait_for(timeout=10_000)


def screenshot(page: Any, name: str) -> Path:
    """A PNG of the page: into docs/img/ (the README's) with FLEETD_SCREENSHOTS=1, else a temp dir, so
    an ordinary test run leaves the work tree clean."""
    if os.environ.get("FLEETD_SCREENSHOTS", "") in ("", "0"):
        target = Path(tempfile.gettempdir()) / "fleetd-screenshots"
    else:
        target = DOCS_IMG
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path
