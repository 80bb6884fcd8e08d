"""Integration fixtures: the session's lab of real daemons (see tests/integration/lab.py).

``docker_lab`` (session): d1, d2, tls and, when podman is installed, podman; skipped when dockerd is
missing or cannot start, unless FLEETD_REQUIRE_DOCKER=1 (then the tests fail). ``podman_daemon``: the
podman entry, skipped when absent unless FLEETD_REQUIRE_PODMAN=1. A test that stops a daemon and
fails before starting it again does not leak the outage into the next test: it is restarted after it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.integration.lab import Daemon, DockerLab, LabError, docker_unavailable_reason

REQUIRE_DOCKER = "FLEETD_REQUIRE_DOCKER"
REQUIRE_PODMAN = "FLEETD_REQUIRE_PODMAN"
_LAB_SUMMARY = pytest.StashKey[str]()


def required(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str, variable: str) -> NoReturn:
    """Skip, or fail when ``variable`` says this environment must have it."""
    if required(variable):
        pytest.fail(f"{reason} (failing instead of skipping because {variable}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_lab(request: pytest.FixtureRequest) -> Iterator[DockerLab]:
    if reason := docker_unavailable_reason():
        unavailable(reason, REQUIRE_DOCKER)
    try:
        lab = DockerLab.start(log=lambda message: print(f"docker lab: {message}", file=sys.stderr))
    except LabError as exc:
        unavailable(f"docker lab could not start: {exc}", REQUIRE_DOCKER)
    summary = f"docker lab: {', '.join(lab.daemons)} up in {lab.startup_seconds:.1f}s"
    if lab.podman_problem:
        summary += f" (no podman: {lab.podman_problem})"
    request.config.stash[_LAB_SUMMARY] = summary
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def podman_daemon(docker_lab: DockerLab) -> Daemon:
    daemon = docker_lab.daemons.get("podman")
    if daemon is None:
        unavailable(docker_lab.podman_problem or "podman is not part of the lab", REQUIRE_PODMAN)
    return daemon


@pytest.fixture(autouse=True)
def _lab_daemons_restarted(request: pytest.FixtureRequest) -> Iterator[None]:
    lab: DockerLab | None = None
    if "docker_lab" in request.fixturenames:
        lab = request.getfixturevalue("docker_lab")
    yield
    if lab is not None:
        for daemon in lab.daemons.values():
            if not daemon.running:
                daemon.start()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if summary := config.stash.get(_LAB_SUMMARY, None):
        terminalreporter.write_line(summary)
