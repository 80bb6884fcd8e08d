"""``fleetd run`` on the lab with viewer/operator/admin tokens, and the client commands run against it.

    with ctl_fleetd(lab, tmp_path) as fleet:
        result = fleet.cli("ps", "-a")                  # `fleetd ps -a` as a subprocess, operator token
        rows = parse_table(result.stdout)               # [{"HOST": "d1", "CONTAINER ID": ...}, ...]
        fleet.api("/api/v1/containers")                 # what the API says, for comparison

Polling is fast (interval 2 s, and Engine events in between) so what the daemons do shows within seconds;
the timeout (1.5 s) leaves a loaded machine room for container starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.integration.lab_daemon import Daemon
from tests.integration.lab_os import free_port
from tests.integration.lab_tls import TLSPaths

__all__ = ["CtlFleet", "ctl_fleetd", "fleetd_cli", "parse_table", "poll_until"]

T = TypeVar("T")
ROLES = ("viewer", "operator", "admin")


def fleetd_cli() -> list[str]:
    script = Path(sys.executable).with_name("fleetd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fleetd"]


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of a fleetd table, keyed by header. Columns are the runs of positions some line uses,
    separated by two or more blanks on every line (columns are three blanks apart; values and headers
    such as "CONTAINER ID" hold single blanks only), so left- and right-aligned columns both work."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    width = max(len(line) for line in lines)
    used = [any(i < len(line) and line[i] != " " for line in lines) for i in range(width)]
    runs: list[tuple[int, int]] = []
    start: int | None = None
    free = 0
    for i, busy in enumerate([*used, False, False]):
        if busy:
            if start is None:
                start = i
            free = 0
            end = i + 1
        elif start is not None:
            free += 1
            if free >= 2:
                runs.append((start, end))
                start = None
    names = [lines[0][a:b].strip() for a, b in runs]
    assert all(names), f"a column without a header in:\n{text}"
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, runs, strict=True)} for line in lines[1:]]


def poll_until(probe: Callable[[], T | None], what: str, within: float = 20.0, every: float = 0.25) -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g}s")
        time.sleep(every)


@dataclass
class CtlFleet:
    url: str
    tokens: dict[str, str]
    config: Path
    process: subprocess.Popen[bytes]
    log: Path

    def env(self, role: str | None = "operator", **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FLEETD_") and k not in ("NO_COLOR", "COLUMNS")
        }
        env["FLEETD_URL"] = self.url
        env["PATH"] = (
            f"{Path(fleetd_cli()[0]).parent}{os.pathsep}{env.get('PATH', '')}"  # for completion scripts
        )
        if role is not None:
            env["FLEETD_TOKEN"] = self.tokens[role]
        env.update(extra)
        return env

    def cli(
        self,
        *args: str,
        role: str | None = "operator",
        timeout: float = 60.0,
        input: str | None = None,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*fleetd_cli(), *args],
            env=self.env(role, **env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def api(self, path: str, role: str = "admin") -> Any:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.tokens[role]}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def containers(self, query: str = "") -> list[dict[str, Any]]:
        return list(self.api("/api/v1/containers" + query)["containers"])


def _host(daemon: Daemon) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": daemon.name, "url": daemon.tcp_url}
    if daemon.tls_paths is not None:
        t = daemon.tls_paths
        entry["tls"] = {"ca": str(t.ca), "cert": str(t.cert), "key": str(t.key)}
    return entry


@contextlib.contextmanager
def ctl_fleetd(
    daemons: list[Daemon], tmp_path: Path, *, listen_tls: TLSPaths | None = None
) -> Iterator[CtlFleet]:
    """``fleetd run`` on ``daemons``; with ``listen_tls`` (a server certificate) it serves HTTPS."""
    tokens = {role: secrets.token_urlsafe(24) for role in ROLES}
    port = free_port()
    config = tmp_path / "fleetd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{port}",
                "poll": {"interval": "2s", "timeout": "1500ms", "max_backoff": "1s"},
                "snapshots": {"enabled": True, "path": str(tmp_path / "fleetd.db"), "interval": "1h"},
                "log": {"format": "json", "level": "info"},
                "auth": {
                    "tokens": [
                        {
                            "name": f"{role}-token",
                            "role": role,
                            "token_sha256": hashlib.sha256(t.encode()).hexdigest(),
                        }
                        for role, t in tokens.items()
                    ]
                },
                "hosts": [_host(d) for d in daemons],
                **(
                    {"listen_tls": {"cert": str(listen_tls.cert), "key": str(listen_tls.key)}}
                    if listen_tls
                    else {}
                ),
            },
            sort_keys=False,
        )
    )
    log = tmp_path / "fleetd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*fleetd_cli(), "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    fleet = CtlFleet(f"{'https' if listen_tls else 'http'}://127.0.0.1:{port}", tokens, config, proc, log)
    context = ssl.create_default_context(cafile=str(listen_tls.ca)) if listen_tls else None

    def ready() -> bool:
        assert proc.poll() is None, f"fleetd exited with {proc.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(fleet.url + "/readyz", timeout=2, context=context) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        poll_until(ready, "fleetd ready", within=30)
        yield fleet
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
