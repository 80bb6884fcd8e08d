"""The lab is what it says: every daemon answers, holds the expected containers, TLS is mutual."""

from __future__ import annotations

import json
import ssl

import aiohttp
import pytest

from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab

pytestmark = pytest.mark.docker

PING_TIMEOUT = aiohttp.ClientTimeout(total=10)


async def ping(url: str, *, ssl_context: ssl.SSLContext | bool = True, unix: str | None = None) -> str:
    connector = aiohttp.UnixConnector(path=unix) if unix else aiohttp.TCPConnector(ssl=ssl_context)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=PING_TIMEOUT) as http,
        http.get(f"{url}/_ping") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Api-Version"]
        return await resp.text()


async def test_every_docker_daemon_answers_ping_on_tcp_and_unix(docker_lab: DockerLab) -> None:
    assert {"d1", "d2", "tls"} <= docker_lab.daemons.keys()
    for daemon in docker_lab.docker_daemons():
        assert daemon.tcp_url == f"tcp://127.0.0.1:{daemon.port}" and daemon.port < 32768
        ctx = daemon.ssl_context() if daemon.tls_paths else True
        assert await ping(daemon.base_url, ssl_context=ctx) == "OK"
        assert daemon.unix_url is not None and daemon.unix_path is not None
        assert len(str(daemon.unix_path)) < 108
        assert await ping("http://docker", unix=str(daemon.unix_path)) == "OK"


def test_expected_containers_exist(docker_lab: DockerLab) -> None:
    for daemon in docker_lab.daemons.values():
        out = daemon.docker("ps", "--all", "--format", '{{.Names}}\t{{.State}}\t{{.Label "app"}}').stdout
        seen = {name: (state, app) for name, state, app in (line.split("\t") for line in out.splitlines())}
        expected = {
            c.name: ("running" if c.running else "exited", c.labels["app"])
            for c in daemon.containers.values()
        }
        assert seen == expected, daemon.name
    assert set(docker_lab.daemons["d1"].containers) == {"web1", "job1"}
    assert set(docker_lab.daemons["d2"].containers) == {"web2", "db2"}
    assert set(docker_lab.daemons["tls"].containers) == {"tls1"}


def test_containers_have_no_network_and_the_busybox_image(docker_lab: DockerLab) -> None:
    d1 = docker_lab.daemons["d1"]
    status, containers = d1.request("GET", "/v1.41/containers/json?all=1")
    assert status == 200
    assert {c["HostConfig"]["NetworkMode"] for c in containers} == {"none"}
    assert {c["Image"] for c in containers} == {BUSYBOX_IMAGE}


def test_dockerd_daemons_share_the_engine_id(docker_lab: DockerLab) -> None:
    """dockerd 20.10 derives ID from /etc/docker/key.json: cloned hosts look like this."""
    ids = {d.name: d.request("GET", "/info")[1]["ID"] for d in docker_lab.docker_daemons()}
    assert len(set(ids.values())) == 1, ids


async def test_tls_daemon_requires_a_client_certificate(docker_lab: DockerLab) -> None:
    tls = docker_lab.daemons["tls"]
    assert tls.tls_paths is not None and tls.base_url.startswith("https://")
    assert all(p.is_file() for p in (tls.tls_paths.ca, tls.tls_paths.cert, tls.tls_paths.key))
    assert await ping(tls.base_url, ssl_context=tls.ssl_context()) == "OK"

    no_cert = ssl.create_default_context(cafile=str(tls.tls_paths.ca))
    with pytest.raises(aiohttp.ClientError):
        await ping(tls.base_url, ssl_context=no_cert)
    async with (
        aiohttp.ClientSession(timeout=PING_TIMEOUT) as http,
        http.get(f"http://127.0.0.1:{tls.port}/_ping") as resp,
    ):
        assert resp.status == 400  # "Client sent an HTTP request to an HTTPS server."
    assert "tls1" in tls.docker("ps", "--format", "{{.Names}}", tcp=True).stdout


def test_plain_daemons_speak_plain_http(docker_lab: DockerLab) -> None:
    d1 = docker_lab.daemons["d1"]
    assert d1.tls_paths is None and d1.base_url == f"http://127.0.0.1:{d1.port}"
    assert "web1" in d1.docker("ps", "--format", "{{.Names}}", tcp=True).stdout


async def test_create_through_the_api(docker_lab: DockerLab) -> None:
    await _create_start_remove(docker_lab.daemons["d2"])


async def test_stop_and_start_keep_address_and_containers(docker_lab: DockerLab) -> None:
    d2 = docker_lab.daemons["d2"]
    old_pid = d2.pid
    async with d2.outage():
        assert not d2.running and not d2.ping()
        with pytest.raises(aiohttp.ClientConnectionError):
            await ping(d2.base_url)
    assert d2.running and d2.pid != old_pid
    assert await ping(d2.base_url) == "OK"
    running = d2.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert sorted(running) == ["db2", "web2"]  # restart policy brings them back with the daemon


@pytest.mark.podman
async def test_podman_serves_the_docker_api(podman_daemon: Daemon) -> None:
    assert podman_daemon.unix_url is None
    async with (
        aiohttp.ClientSession(timeout=PING_TIMEOUT) as http,
        http.get(f"{podman_daemon.base_url}/_ping") as resp,
    ):
        assert resp.status == 200 and resp.headers["Server"].startswith("Libpod/")
    status, containers = podman_daemon.request("GET", "/v1.41/containers/json")
    assert status == 200
    assert [(c["Names"], c["State"], c["Labels"]) for c in containers] == [
        (["/pod1"], "running", {"app": "web"})
    ]
    await _create_start_remove(podman_daemon)


async def _create_start_remove(daemon: Daemon) -> None:
    spec = {"Image": BUSYBOX_IMAGE, "Cmd": ["sleep", "1000"], "HostConfig": {"NetworkMode": "none"}}
    base = f"{daemon.base_url}/v1.41"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.post(f"{base}/containers/create?name=lab-api-check", json=spec) as resp:
            assert resp.status == 201, await resp.text()
            cid = (await resp.json())["Id"]
        try:
            async with http.post(f"{base}/containers/{cid}/start") as resp:
                assert resp.status == 204, await resp.text()
            filters = json.dumps({"name": ["lab-api-check"]})
            async with http.get(f"{base}/containers/json", params={"filters": filters}) as resp:
                assert [c["State"] for c in await resp.json()] == ["running"]
        finally:
            async with http.delete(f"{base}/containers/{cid}?force=1") as resp:
                assert resp.status == 204, await resp.text()
