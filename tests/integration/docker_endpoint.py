"""``fleetd run`` with its Docker-compatible endpoint in front of lab daemons, and the real docker CLIs.

    with docker_endpoint(tmp, hosts, docker_api={...}) as ep:
        ep.cli(DOCKER_CLIS[0], "ps", "-a")         # docker -H tcp://127.0.0.1:PORT ps -a
        ep.http("GET", "/v1.41/containers/json")     # (status, headers, body)

The docker CLIs are Debian's docker.io (20.10, /usr/bin/docker) and, where the machine has one, a
newer static client earlier on PATH (/usr/local/bin/docker); :data:`DOCKER_CLIS` lists those present.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleetd.config.durations import parse_duration
from tests.integration.lab_daemon import Daemon
from tests.integration.lab_os import free_port

__all__ = ["DOCKER_CLIS", "Endpoint", "cli_version", "docker_endpoint", "lab_hosts"]


def _clis() -> list[str]:
    found: list[str] = []
    for path in ("/usr/bin/docker", "/usr/local/bin/docker", shutil.which("docker") or ""):
        if path and os.access(path, os.X_OK) and os.path.realpath(path) not in [os.path.realpath(p) for p in found]:
            found.append(path)
    return found


DOCKER_CLIS = _clis()


def cli_version(cli: str) -> str:
    done = subprocess.run([cli, "--version"], capture_output=True, text=True, check=False, timeout=10)
    return done.stdout.strip()


def lab_hosts(daemons: list[Daemon], *, interval: str = "30s", timeout: str = "5s") -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = []
    for d in daemons:
        h: dict[str, Any] = {"name": d.name, "url": d.tcp_url, "interval": interval, "timeout": timeout}
        if d.tls_paths is not None:
            t = d.tls_paths
            h["tls"] = {"ca": str(t.ca), "cert": str(t.cert), "key": str(t.key)}
        if d.kind == "podman":  # podman's /info takes most of a second
            h["timeout"] = "3s"
            h["interval"] = interval if parse_duration(interval) > 3 else "5s"
        hosts.append(h)
    return hosts


@dataclass
class Endpoint:
    port: int
    api_port: int
    root: Path
    log: Path
    config_dir: Path  # DOCKER_CONFIG for the CLI

    @property
    def docker_host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def env(self, config_dir: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = self.docker_host
        env["DOCKER_CONFIG"] = str(config_dir or self.config_dir)
        return env

    def cli(
        self, cli: str, *args: str, input: str | None = None, timeout: float = 60.0, config_dir: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, *args], input=input, capture_output=True, text=True, timeout=timeout,
            env=self.env(config_dir), check=False,
        )  # fmt: skip

    def ok(self, cli: str, *args: str, input: str | None = None, timeout: float = 60.0) -> str:
        done = self.cli(cli, *args, input=input, timeout=timeout)
        assert done.returncode == 0, f"{cli} {' '.join(args)} → {done.returncode}: {done.stderr}\n{self.tail()}"
        return done.stdout

    def http(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def api(self, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=30)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def wait_for(self, what: str, probe: Any, within: float = 20.0) -> None:
        started = time.monotonic()
        while not probe():
            assert time.monotonic() - started < within, f"{what}: not within {within:g}s\n{self.tail()}"
            time.sleep(0.1)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("fleetd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fleetd"]


@contextlib.contextmanager
def docker_endpoint(
    root: Path, hosts: list[dict[str, Any]], *, docker_api: dict[str, Any] | None = None,
    auth: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
) -> Iterator[Endpoint]:
    """``fleetd run`` on fresh loopback ports; yields once every host answered its first poll."""
    root.mkdir(parents=True, exist_ok=True)
    port, api_port = free_port(), free_port()
    cfg: dict[str, Any] = {
        "listen": f"127.0.0.1:{api_port}",
        "poll": {"interval": "30s", "timeout": "5s", "max_backoff": "1s"},
        "snapshots": {"enabled": False},
        "log": {"format": "json", "level": "info"},
        "hosts": hosts,
        "docker_api": {"listen": f"127.0.0.1:{port}", **(docker_api or {})},
        **(extra or {}),
    }
    if auth is not None:
        cfg["auth"] = auth
    (root / "fleetd.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    config_dir = root / "docker-cli"
    config_dir.mkdir(exist_ok=True)
    log = root / "fleetd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_command(), "run", "--config", str(root / "fleetd.yaml")], stdout=out, stderr=subprocess.STDOUT
        )
    ep = Endpoint(port, api_port, root, log, config_dir)
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"fleetd exited with {proc.returncode}:\n{ep.tail()}"
            try:
                hosts_doc = ep.api("/api/v1/hosts")
            except OSError:
                return False
            listening = "docker endpoint listening" in ep.tail(100_000)
            return listening and all(h.get("state", h.get("status")) != "unknown" for h in hosts_doc["hosts"])

        ep.wait_for("fleetd's Docker endpoint ready", ready, within=30)
        yield ep
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text[-4000:]
