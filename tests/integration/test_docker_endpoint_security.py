"""The Docker endpoint's listeners and failure views with real clients: mutual TLS (the CLI's
--tlsverify) with client certificates mapped to roles, a unix socket with mode 0660, and a host that
goes down (a warning in `docker info`, its containers only with `-a`)."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.docker_endpoint import DOCKER_CLIS, docker_endpoint, lab_hosts
from tests.integration.lab import DockerLab, make_certificates

pytestmark = pytest.mark.docker


def test_mutual_tls_listener_with_client_roles(docker_lab: DockerLab, tmp_path: Path) -> None:
    server, client = make_certificates(tmp_path / "certs")
    tls = {"cert": str(server.cert), "key": str(server.key), "ca": str(server.ca)}
    d1 = docker_lab.daemons["d1"]
    verify = ["--tlsverify", f"--tlscacert={client.ca}", f"--tlscert={client.cert}", f"--tlskey={client.key}"]
    with docker_endpoint(
        tmp_path / "fleetd", lab_hosts([d1]),
        docker_api={"tls": tls, "client_roles": {"fleetd-test-client": "viewer"}},
    ) as ep:  # fmt: skip
        for cli in DOCKER_CLIS:
            out = ep.ok(cli, *verify, "ps", "--format", "{{.Names}}")
            assert "d1/web1" in out.split()
            refused = ep.cli(cli, *verify, "stop", "d1/web1")
            assert refused.returncode != 0 and "fleetd-test-client has role viewer" in refused.stderr
            no_cert = ep.cli(cli, "--tlsverify", f"--tlscacert={client.ca}", "ps")
            assert no_cert.returncode != 0
        assert d1.docker("inspect", "-f", "{{.State.Status}}", "web1").stdout.strip() == "running"
    # Without client_roles, a certificate the CA signed has full access. The CLI ends its side of an
    # exec with a TLS close_notify: the output must still come back (and stdin's EOF reach the process).
    with docker_endpoint(tmp_path / "fleetd2", lab_hosts([d1]), docker_api={"tls": tls}) as ep:
        for cli in DOCKER_CLIS:
            assert ep.ok(cli, *verify, "exec", "d1/web1", "echo", "ok") == "ok\n"
            out = ep.ok(cli, *verify, "exec", "-i", "d1/web1", "sh", "-c", "cat; echo done", input="x\n")
            assert out == "x\ndone\n"


def test_unix_socket_listener(docker_lab: DockerLab, tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    with docker_endpoint(tmp_path / "fleetd", lab_hosts([docker_lab.daemons["d1"]]),
                         docker_api={"listen": f"unix://{sock}"}) as ep:  # fmt: skip
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        out = ep.ok(DOCKER_CLIS[0], "-H", f"unix://{sock}", "ps", "-a", "--format", "{{.Names}}")
        assert "d1/job1" in out.split()
    assert not sock.exists()  # removed at shutdown


def test_a_down_host_is_a_warning_and_its_containers_only_listed_with_all(
    docker_lab: DockerLab, tmp_path: Path
) -> None:
    d1, d2 = docker_lab.daemons["d1"], docker_lab.daemons["d2"]
    hosts = lab_hosts([d1, d2], interval="1s", timeout="500ms")
    with docker_endpoint(tmp_path / "fleetd", hosts) as ep:
        cli = DOCKER_CLIS[0]
        assert "d2/web2" in ep.ok(cli, "ps", "--format", "{{.Names}}").split()
        watch = subprocess.Popen([cli, "events", "--filter", "type=swarm"], stdout=subprocess.PIPE, env=ep.env())
        time.sleep(0.5)
        d2.stop()
        try:
            ep.wait_for("d2 down", lambda: any(
                "host d2 is down" in w for w in json.loads(ep.http("GET", "/info")[2])["Warnings"]
            ), within=20)  # fmt: skip
            info = ep.cli(cli, "info")
            assert info.returncode == 0, info.stderr
            assert "WARNING: host d2 is down" in info.stderr
            assert "└ Status: Unhealthy" in info.stdout
            running = ep.ok(cli, "ps", "--format", "{{.Names}}").split()
            assert "d1/web1" in running and not any(n.startswith("d2/") for n in running)
            everything = ep.ok(cli, "ps", "-a", "--format", "{{.Names}} {{.Status}}").splitlines()
            assert any(line.startswith("d2/web2 Host Down") for line in everything), everything
            refused = ep.cli(cli, "stop", "d2/web2")
            assert refused.returncode != 0 and "host d2 is down" in refused.stderr
            d2.start()
            assert watch.stdout is not None
            lines = [watch.stdout.readline().decode() for _ in range(2)]  # classic Swarm's engine events
            assert " swarm engine_disconnect " in lines[0] and "node.name=d2" in lines[0], lines
            assert " swarm engine_reconnect " in lines[1] and "node.name=d2" in lines[1], lines
        finally:
            watch.kill()
            watch.wait()
            assert watch.stdout is not None
            watch.stdout.close()
            if not d2.running:
                d2.start()
