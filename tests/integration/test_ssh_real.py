"""fleetd reaching a real dockerd through a real OpenSSH server (``url: ssh://root@127.0.0.1:PORT``).

The sshd (lab_sshd.py) has its own host key and authorized key, allows stream-local forwarding and
logs at DEBUG1 to its own file, so the tests count on the server side what fleetd did: logins
("Accepted publickey") and channels to the Docker socket ("direct-streamlocal"). What fleetd shows
is compared with what the daemon itself says (the docker CLI on its own unix socket).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from fleetd.config.model import HostSettings, SSHSettings
from fleetd.dockerapi import DockerClient, EngineConnections, SSHOptions, Timeouts
from tests.integration.conftest import REQUIRE_DOCKER, unavailable
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab
from tests.integration.lab_fleet import (
    Fleet,
    daemon_truth,
    fleet_server,
    fleetd_process,
    listed,
    wait_until,
)
from tests.integration.lab_os import processes_mentioning
from tests.integration.lab_sshd import Sshd, keygen, sshd_unavailable_reason
from tests.unit.opskit import Tokens, settings, start_client

pytestmark = pytest.mark.docker

#: Polling of the SSH hosts: fast enough that states show within seconds, with a timeout that a
#: handshake, or the socket diagnosis (a command run over SSH), fits in on a loaded 2-core machine.
INTERVAL = 2.5
TIMEOUT = 2.0

TOKENS = Tokens(ops="operator")
OP = TOKENS.header("ops")


@pytest.fixture
def sshd(docker_lab: DockerLab, tmp_path: Path) -> Iterator[Sshd]:
    if reason := sshd_unavailable_reason():
        unavailable(reason, REQUIRE_DOCKER)
    server = Sshd.start(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.close()


def ssh_host(name: str, sshd: Sshd, daemon: Daemon, **ssh: object) -> HostSettings:
    """``daemon``'s unix socket through ``sshd``; keyword arguments override the SSHSettings."""
    assert daemon.unix_path is not None
    settings = SSHSettings(
        identity=sshd.client_key,
        known_hosts=sshd.known_hosts,
        socket=str(daemon.unix_path),
        connect_timeout=5.0,
        keepalive_interval=5.0,
    )
    return HostSettings(
        name=name,
        url=sshd.url("root"),
        interval=INTERVAL,
        timeout=TIMEOUT,
        ssh=dataclasses.replace(settings, **ssh),  # type: ignore[arg-type]
    )


def fingerprint(public_key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"


def channels_opened(sshd: Sshd) -> int:
    return len(re.findall(r"server_request_direct_streamlocal", sshd.log_text()))


async def poll_count(fleet: Fleet, outcome: str = "success") -> int:
    async with fleet.http.get("/metrics") as resp:
        text = await resp.text()
    found = re.search(rf'^fleetd_poll_duration_seconds_count\{{outcome="{outcome}"\}} (\S+)', text, re.M)
    return int(float(found.group(1))) if found else 0


@pytest.fixture
async def ssh_fleet(sshd: Sshd, docker_lab: DockerLab, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with fleet_server(tmp_path, ssh_host("d1ssh", sshd, docker_lab.daemons["d1"])) as fleet:
        yield fleet


async def test_host_over_ssh_shows_exactly_what_docker_ps_shows(
    ssh_fleet: Fleet, docker_lab: DockerLab, sshd: Sshd
) -> None:
    d1 = docker_lab.daemons["d1"]

    async def up() -> bool:
        return bool((await ssh_fleet.hosts())["d1ssh"]["state"] == "up")

    await wait_until(up, "d1ssh up over SSH")
    h = (await ssh_fleet.hosts())["d1ssh"]
    assert (h["state"], h["last_error"], h["api_version"]) == ("up", None, "1.41"), h
    assert listed(await ssh_fleet.containers(), "d1ssh") == await daemon_truth(d1)
    assert sshd.accepted_connections() == 1


async def test_action_and_log_over_ssh(docker_lab: DockerLab, sshd: Sshd, tmp_path: Path) -> None:
    d1 = docker_lab.daemons["d1"]
    name = f"ssh-{uuid.uuid4().hex[:8]}"
    d1.docker("create", "--network", "none", "--name", name, BUSYBOX_IMAGE, "sh", "-c",
              "echo hello-over-ssh; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done")
    client = await start_client(settings(tmp_path, [ssh_host("d1ssh", sshd, d1)], TOKENS.auth()))
    try:
        resp = await client.post(f"/api/v1/containers/d1ssh/{name}/start", headers=OP)
        assert resp.status == 200, await resp.text()
        state = d1.docker("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running"
        assert [c["state"] for c in (await (await client.get(
            "/api/v1/containers", params={"name": name}, headers=OP)).json())["containers"]] == ["running"]

        async def logged() -> bool:
            resp = await client.get(f"/api/v1/containers/d1ssh/{name}/logs", headers=OP)
            body = await resp.json()
            return {"stream": "stdout", "line": "hello-over-ssh"} in body["lines"]

        await wait_until(logged, "the container's first line in its logs over SSH")

        # A followed log is one long-lived channel: lines keep arriving on it while it is open.
        params = {"follow": "1", "tail": "0"}
        async with client.get(f"/api/v1/containers/d1ssh/{name}/logs", params=params, headers=OP) as resp:
            assert resp.status == 200, await resp.text()
            ticks: list[int] = []
            while len(ticks) < 3:
                async with asyncio.timeout(15):
                    raw = await resp.content.readline()
                assert raw, "the followed log ended"
                entry = json.loads(raw)
                assert (entry["host"], entry["container"], entry["stream"]) == ("d1ssh", name, "stdout"), entry
                if found := re.fullmatch(r"tick (\d+)", entry["line"]):
                    ticks.append(int(found.group(1)))
        assert ticks == list(range(ticks[0], ticks[0] + 3)), ticks  # consecutive: nothing lost or repeated
        assert sshd.accepted_connections() == 1  # the poll, the action and both logs on one connection
    finally:
        await client.close()
        d1.docker("rm", "--force", name, check=False)


async def test_each_ssh_refusal_has_its_own_clear_error(
    sshd: Sshd, docker_lab: DockerLab, tmp_path: Path
) -> None:
    d1 = docker_lab.daemons["d1"]
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    impostor = keygen(tmp_path / "impostor_host_key", "not the server's key")
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{sshd.port} {(tmp_path / 'impostor_host_key.pub').read_text()}")
    stranger = keygen(tmp_path / "stranger_key", "a key sshd does not know")
    missing = tmp_path / "no-such-dir" / "docker.sock"
    plain_file = tmp_path / "not-a-socket"
    plain_file.write_text("")
    # A port that accepts TCP connections (the kernel completes them) and never says a word.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    mute = dataclasses.replace(
        ssh_host("silent", sshd, d1, connect_timeout=1.0), url=f"ssh://root@127.0.0.1:{silent.getsockname()[1]}"
    )
    hosts = [
        ssh_host("good", sshd, d1),
        ssh_host("unknown-key", sshd, d1, known_hosts=empty),
        ssh_host("changed-key", sshd, d1, known_hosts=changed),
        ssh_host("refused-key", sshd, d1, identity=stranger),
        ssh_host("no-socket", sshd, d1, socket=str(missing)),
        ssh_host("file", sshd, d1, socket=str(plain_file)),
        mute,
    ]
    server_fp = fingerprint(sshd.host_key.with_suffix(".pub"))
    impostor_fp = fingerprint(impostor.with_suffix(".pub"))
    expected = {
        "good": "up", "unknown-key": "error", "changed-key": "error", "refused-key": "error",
        "no-socket": "error", "file": "error", "silent": "down",
    }  # fmt: skip
    with silent:
        async with fleet_server(tmp_path, *hosts) as fleet:

            async def settled() -> dict[str, dict[str, object]] | None:
                found = await fleet.hosts()
                return found if {n: h["state"] for n, h in found.items()} == expected else None

            await wait_until(settled, f"the SSH hosts {expected}", within=30)
            found = await fleet.hosts()
    msg = {name: str(h["last_error"]) for name, h in found.items()}
    assert msg["unknown-key"].startswith(f"unknown host key for [127.0.0.1]:{sshd.port}"), msg
    assert f"ssh-ed25519 {server_fp}" in msg["unknown-key"] and str(empty) in msg["unknown-key"]
    assert f"ssh-keyscan -p {sshd.port} -t ed25519 127.0.0.1 >> {empty}" in msg["unknown-key"]
    assert msg["changed-key"].startswith(f"HOST KEY CHANGED for [127.0.0.1]:{sshd.port}"), msg
    assert server_fp in msg["changed-key"] and impostor_fp in msg["changed-key"]
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {changed}" in msg["changed-key"]
    assert "refused key authentication as 'root'" in msg["refused-key"] and str(stranger) in msg["refused-key"]
    assert msg["no-socket"].startswith(f"remote socket {missing} does not exist on 127.0.0.1"), msg
    assert "as user 'root'" in msg["no-socket"]
    assert msg["file"] == f"{plain_file} on 127.0.0.1 is not a socket; set ssh.socket", msg
    assert msg["silent"].startswith("SSH connection to root@127.0.0.1:") and "not established within 1s" in (
        msg["silent"]
    ), msg
    # Only the hosts with a usable key and a trusted host key logged in: good, no-socket and file;
    # fleetd's shutdown closed all three connections (sshd saw each disconnect).
    assert sshd.accepted_connections() == 3
    await wait_until(lambda: _true(sshd.log_text().count("Disconnected from user root") == 3), "closed")


async def test_sshd_gone_is_down_and_back_is_up(ssh_fleet: Fleet, sshd: Sshd) -> None:
    async def state() -> str:
        return str((await ssh_fleet.hosts())["d1ssh"]["state"])

    async def is_(wanted: str) -> bool:
        return await state() == wanted

    await wait_until(lambda: is_("up"), "up over SSH")
    assert sshd.session_pids(), "fleetd holds an SSH session"
    sshd.kill()
    await wait_until(lambda: is_("down"), "down once sshd and its sessions are gone")
    h = (await ssh_fleet.hosts())["d1ssh"]
    assert "cannot connect to SSH server root@127.0.0.1" in h["last_error"], h
    assert "connection refused" in h["last_error"], h
    sshd.restart()
    await wait_until(lambda: is_("up"), "up again after sshd is back", within=20)
    assert sshd.accepted_connections() == 2  # one login before the outage, one after


async def test_fifty_polls_share_one_ssh_connection(sshd: Sshd, docker_lab: DockerLab, tmp_path: Path) -> None:
    fast = dataclasses.replace(ssh_host("d1ssh", sshd, docker_lab.daemons["d1"]), interval=0.12, timeout=0.1)
    async with fleet_server(tmp_path, fast) as fleet:

        async def fifty() -> bool:
            return await poll_count(fleet) >= 50

        await wait_until(fifty, "50 successful polls", within=60)
        failed = await poll_count(fleet, "failure")
        channels = channels_opened(sshd)
    assert sshd.accepted_connections() == 1, sshd.log_text()[-3000:]
    # HTTP keep-alive on the channels too: a poll reuses the (at most two) pooled channels; only a
    # poll that timed out (its requests cancelled, their channels closed) makes the next one open new ones.
    # The Engine event stream holds one channel of its own.
    assert 1 <= channels <= 3 + 2 * failed, (channels, failed)
    print(f"50 polls: 1 SSH login, {channels} channels, {failed} polls failed")


async def test_sshd_that_forbids_forwarding_is_named(docker_lab: DockerLab, tmp_path: Path) -> None:
    if reason := sshd_unavailable_reason():
        unavailable(reason, REQUIRE_DOCKER)
    strict = Sshd.start(tmp_path / "strict", tcp_forwarding="no")
    try:
        async with fleet_server(tmp_path, ssh_host("strict", strict, docker_lab.daemons["d1"])) as fleet:

            async def in_error() -> bool:
                return bool((await fleet.hosts())["strict"]["state"] == "error")

            await wait_until(in_error, "error: sshd refuses the channel", within=30)
            h = (await fleet.hosts())["strict"]
    finally:
        strict.close()
    assert h["last_error"].startswith(f"sshd on root@127.0.0.1:{strict.port} would not connect to "), h
    assert "'AllowTcpForwarding no'" in h["last_error"], h
    assert "the request was denied" in strict.log_text()  # sshd's side of it


async def test_fleetd_run_from_yaml_and_reload_closes_what_it_replaces(
    sshd: Sshd, docker_lab: DockerLab, tmp_path: Path
) -> None:
    d1 = docker_lab.daemons["d1"]
    ssh_block = {"identity": str(sshd.client_key), "known_hosts": str(sshd.known_hosts), "socket": str(d1.unix_path)}
    entry = {"name": "web", "url": sshd.url("root"), "timeout": "2s", "interval": "3s", "ssh": ssh_block}
    config = tmp_path / "fleetd.yaml"

    def disconnects() -> int:
        return sshd.log_text().count("Disconnected from user root")

    async with fleetd_process(tmp_path, [entry]) as (fleet, log_text):

        async def up() -> bool:
            return bool((await fleet.hosts()).get("web", {}).get("state") == "up")

        await wait_until(up, "web up over SSH in fleetd run")
        assert listed(await fleet.containers(), "web") == await daemon_truth(d1)
        [pid] = processes_mentioning(str(config))  # fleetd run --config CONFIG

        async def reload(hosts: list[dict[str, object]]) -> None:
            text = yaml.safe_load(config.read_text())
            text["hosts"] = hosts
            config.write_text(yaml.safe_dump(text, sort_keys=False))
            os.kill(pid, signal.SIGHUP)

        # A changed ssh: setting is a new connection; the old one is closed, not left behind.
        await reload([{**entry, "ssh": {**ssh_block, "keepalive_interval": "7s"}}])
        await wait_until(lambda: _true(sshd.accepted_connections() == 2 and disconnects() == 1), "reconnected")
        await wait_until(up, "web up again after the reload")
        # The host leaves the inventory: its connection goes with it.
        await reload([])
        await wait_until(lambda: _true(disconnects() == 2), "connection closed when the host left")
        assert "Traceback" not in log_text()
    assert sshd.accepted_connections() == 2


async def _true(value: bool) -> bool:
    return value


async def test_engine_events_stream_over_ssh(sshd: Sshd, docker_lab: DockerLab) -> None:
    """``/events`` is a long-lived answer on one channel: events arrive on it as they happen."""
    d1 = docker_lab.daemons["d1"]
    options = SSHOptions(identity=sshd.client_key, known_hosts=sshd.known_hosts, socket=str(d1.unix_path))
    name = f"ssh-ev-{uuid.uuid4().hex[:8]}"
    async with EngineConnections() as connections:
        docker = DockerClient(sshd.url(), ssh=options, connections=connections, timeouts=Timeouts(total=5.0))
        await docker.system.ping()
        try:
            async with docker.system.events(filters={"type": ["container"]}) as stream:
                await asyncio.to_thread(
                    d1.docker, "run", "-d", "--network", "none", "--name", name, BUSYBOX_IMAGE, "sleep", "1000"
                )
                seen: list[str] = []
                async with asyncio.timeout(20):
                    async for event in stream:
                        if event.Actor.Attributes.get("name") == name:
                            seen.append(event.action)
                            if event.action == "start":
                                break
        finally:
            d1.docker("rm", "--force", name, check=False)
        assert seen[-2:] == ["create", "start"], seen
    assert sshd.accepted_connections() == 1


def test_docker_cli_through_fleetds_endpoint_to_an_ssh_host(sshd: Sshd, docker_lab: DockerLab, tmp_path: Path) -> None:
    """fleetd's Docker-compatible endpoint proxies to an ssh:// host: lists, and a hijacked exec whose
    stdin ends (half-close) over a fresh channel."""
    from tests.integration.docker_endpoint import DOCKER_CLIS, docker_endpoint

    if not DOCKER_CLIS:
        pytest.skip("no docker CLI on PATH")
    d1 = docker_lab.daemons["d1"]
    ssh_block = {"identity": str(sshd.client_key), "known_hosts": str(sshd.known_hosts), "socket": str(d1.unix_path)}
    hosts = [{"name": "d1ssh", "url": sshd.url("root"), "interval": "30s", "timeout": "5s", "ssh": ssh_block}]
    with docker_endpoint(tmp_path / "ep", hosts) as ep:
        cli = DOCKER_CLIS[0]
        names = set(ep.ok(cli, "ps", "-a", "--format", "{{.Names}}").split())
        truth = set(d1.docker("ps", "-a", "--format", "{{.Names}}").stdout.split())
        assert names == {f"d1ssh/{n}" for n in truth}, (names, truth)
        assert ep.ok(cli, "exec", "d1ssh/web1", "echo", "ok", timeout=20) == "ok\n"
        out = ep.ok(cli, "exec", "-i", "d1ssh/web1", "sh", "-c", "cat; echo done", input="x\n", timeout=20)
        assert out == "x\ndone\n"
    assert sshd.accepted_connections() == 1  # polls, proxied calls and the hijacked exec: one connection
