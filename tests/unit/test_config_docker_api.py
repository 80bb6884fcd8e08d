"""docker_api: off by default; loopback or unix socket; anything else only with mutual TLS."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fleetd.config.docker_api import DockerAPISettings

if TYPE_CHECKING:
    from conftest import ConfigDir


def test_off_by_default(cfg: ConfigDir) -> None:
    assert cfg.load("hosts: []\n").docker_api is None


def test_loopback_tcp_and_unix_socket(cfg: ConfigDir) -> None:
    tcp = cfg.load("docker_api: {listen: 127.0.0.1:2377, read_only: true}\n").docker_api
    assert tcp is not None and (tcp.host, tcp.port, tcp.read_only, tcp.unix_path) == ("127.0.0.1", 2377, True, None)
    unix = cfg.load("docker_api: {listen: 'unix:///run/fleetd/docker.sock', socket_mode: '0600'}\n").docker_api
    assert unix == DockerAPISettings(
        unix_path=Path("/run/fleetd/docker.sock"), socket_mode=0o600, source=unix.source if unix else ""
    )


def test_non_loopback_without_mutual_tls_is_refused(cfg: ConfigDir) -> None:
    problem = cfg.problem("hosts: []\ndocker_api:\n  listen: 0.0.0.0:2377\n")
    assert (problem.line, problem.field) == (3, "docker_api.listen")
    assert "without mutual TLS" in problem.message and "root on every host" in problem.message


def test_non_loopback_with_mutual_tls(cfg: ConfigDir) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        cfg.write("x", name)
    settings = cfg.load(
        "docker_api:\n  listen: 0.0.0.0:2377\n  tls: {cert: cert.pem, key: key.pem, ca: ca.pem}\n"
        "  client_roles: {ci: operator, grafana: viewer}\n"
    ).docker_api
    assert settings is not None and settings.tls is not None and settings.tls.ca is not None
    assert dict(settings.client_roles) == {"ci": "operator", "grafana": "viewer"}


def test_bad_values_name_the_field(cfg: ConfigDir) -> None:
    problems = cfg.problems(
        "docker_api:\n  listen: 'unix://relative.sock'\n  socket_mode: '0666'\n  read_only: maybe\n  colour: blue\n"
    )
    fields = {p.field: p.message for p in problems}
    assert "absolute socket path" in fields["docker_api.listen"]
    assert "every local user" in fields["docker_api.socket_mode"]
    assert "true or false" in fields["docker_api.read_only"]
    assert "unknown key 'colour'" in fields["docker_api.colour"]


async def test_fleetd_run_exits_1_when_the_docker_listener_cannot_bind(tmp_path: Path) -> None:
    import asyncio
    import socket
    import sys

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with taken, socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        api_port = free.getsockname()[1]
        free.close()
        cfg = tmp_path / "fleetd.yaml"
        cfg.write_text(
            f"listen: 127.0.0.1:{api_port}\nsnapshots: {{enabled: false, path: '{tmp_path / 'f.db'}'}}\n"
            f"hosts: []\ndocker_api: {{listen: 127.0.0.1:{taken.getsockname()[1]}}}\nlog: {{format: json}}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetd", "run", "--config", str(cfg),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, out
    assert b"cannot listen" in out and b"Traceback" not in out
