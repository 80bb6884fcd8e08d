"""The real docker CLIs (20.10 and, where present, 28.x) and docker-py against fleetd's Docker endpoint,
in front of the lab's dockerds and podman. Every effect is checked against the daemon itself too.

Hosts are polled every 30 s here, so whatever the CLI sees right after a change comes from fleetd's
re-read of the host after that change (read-your-writes), not from a lucky poll.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.integration.docker_endpoint import DOCKER_CLIS, Endpoint, cli_version, docker_endpoint, lab_hosts
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab

pytestmark = pytest.mark.docker

CLIS = [pytest.param(cli, id=cli_version(cli).split(",")[0].replace("Docker version ", "cli-")) for cli in DOCKER_CLIS]


@pytest.fixture(scope="module")
def endpoint(docker_lab: DockerLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    with docker_endpoint(tmp_path_factory.mktemp("dockerapi"), lab_hosts(list(docker_lab.daemons.values()))) as ep:
        yield ep


@pytest.fixture
def uid() -> str:
    return secrets.token_hex(3)


@pytest.fixture
def cleanup(docker_lab: DockerLab) -> Iterator[list[tuple[str, str]]]:
    made: list[tuple[str, str]] = []
    yield made
    for host, name in made:
        daemon = docker_lab.daemons[host]
        if daemon.running:
            daemon.docker("rm", "--force", name, check=False)


def truth(daemon: Daemon, *args: str) -> list[str]:
    """Container names as the daemon itself lists them."""
    return daemon.docker("ps", "--format", "{{.Names}}", *args).stdout.split()


def fleet_truth(lab: DockerLab, *args: str) -> dict[str, list[str]]:
    return {name: truth(d, *args) for name, d in lab.daemons.items()}


# -- negotiation, system ----------------------------------------------------------------------------


def test_ping_headers_and_errors_are_engine_shaped(endpoint: Endpoint) -> None:
    status, headers, body = endpoint.http("HEAD", "/_ping")
    assert status == 200 and headers["api-version"] == "1.41" and headers["ostype"] == "linux"
    assert endpoint.http("GET", "/v1.41/_ping")[2] == b"OK"
    status, headers, body = endpoint.http("GET", "/v1.41/containers/nosuch/json")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "No such container: nosuch"}
    status, headers, body = endpoint.http("GET", "/v1.41/services")
    assert status == 501 and b"not supported by fleetd" in body
    status, _, body = endpoint.http("GET", "/v1.99/info")
    assert status == 400 and b"too new. Maximum supported API version is 1.41" in body


@pytest.mark.parametrize("cli", CLIS)
def test_version_shows_one_component_per_host(endpoint: Endpoint, docker_lab: DockerLab, cli: str) -> None:
    out = endpoint.ok(cli, "version")
    assert "fleetd/0.1.0" in out
    for name in docker_lab.daemons:
        assert f"host {name}:" in out
    if "28." in cli_version(cli):
        assert "1.41 (downgraded from" in out


@pytest.mark.parametrize("cli", CLIS)
def test_info_sums_the_fleet(endpoint: Endpoint, docker_lab: DockerLab, cli: str) -> None:
    all_names = fleet_truth(docker_lab, "-a")
    running = fleet_truth(docker_lab)
    done = endpoint.cli(cli, "info")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"Containers: {sum(map(len, all_names.values()))}" in out
    assert f"Running: {sum(map(len, running.values()))}" in out
    assert f"Nodes: {len(docker_lab.daemons)}" in out
    assert " d2: 127.0.0.1:" in out and "└ Status: Healthy" in out


# -- reads ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cli", CLIS)
def test_ps_variants(endpoint: Endpoint, docker_lab: DockerLab, cli: str) -> None:
    running = fleet_truth(docker_lab)
    everything = fleet_truth(docker_lab, "-a")
    names = endpoint.ok(cli, "ps", "--format", "{{.Names}}").split()
    assert sorted(names) == sorted(f"{h}/{n}" for h, ns in running.items() for n in ns)
    all_names = endpoint.ok(cli, "ps", "-a", "--format", "{{.Names}}").split()
    assert sorted(all_names) == sorted(f"{h}/{n}" for h, ns in everything.items() for n in ns)
    assert len(endpoint.ok(cli, "ps", "-aq", "-f", "node=d2").split()) == len(everything["d2"])
    labelled = endpoint.ok(cli, "ps", "-f", "label=app=web", "-f", "name=web2", "--format", "{{.Names}}").split()
    assert labelled == ["d2/web2"]
    assert len(endpoint.ok(cli, "ps", "-n", "2", "-q").split()) == 2
    # newest first, across hosts
    created = [int(c["Created"]) for c in json.loads(endpoint.http("GET", "/v1.41/containers/json?all=1")[2])]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize("cli", CLIS)
def test_images_one_row_per_image_id(endpoint: Endpoint, docker_lab: DockerLab, cli: str) -> None:
    ids = {d.docker("images", "-q", "--no-trunc", BUSYBOX_IMAGE).stdout.strip() for d in docker_lab.daemons.values()}
    rows = endpoint.ok(cli, "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}").splitlines()
    listed = {row.split()[0] for row in rows if row.endswith(BUSYBOX_IMAGE)}
    assert {i.removeprefix("sha256:") for i in ids} <= {i.removeprefix("sha256:") for i in listed}


@pytest.mark.parametrize("cli", CLIS)
def test_inspect_unique_ambiguous_missing(
    endpoint: Endpoint, docker_lab: DockerLab, cli: str, uid: str, cleanup: list[tuple[str, str]]
) -> None:
    assert endpoint.ok(cli, "inspect", "-f", "{{.Name}} {{.Node.Name}}", "d2/web2").strip() == "/web2 d2"
    assert endpoint.ok(cli, "inspect", "-f", "{{.Node.Name}}", "web2").strip() == "d2"
    # the same name on two hosts, made with the daemons' own CLI
    name = f"twin-{uid}"
    for host in ("d1", "d2"):
        docker_lab.daemons[host].docker("create", "--network", "none", "--name", name, BUSYBOX_IMAGE, "true")
        cleanup.append((host, name))
    # fleetd's Engine event watchers see both within a second; the name is ambiguous once both are known
    endpoint.wait_for(
        "both twins in the aggregate",
        lambda: len(endpoint.api(f"/api/v1/containers?name={name}")["containers"]) == 2,
        within=10,
    )
    done = endpoint.cli(cli, "inspect", name)
    assert done.returncode != 0
    assert "ambiguous" in done.stderr and "d1" in done.stderr and "d2" in done.stderr
    assert endpoint.ok(cli, "inspect", "-f", "{{.Node.Name}}", f"d1/{name}").strip() == "d1"
    # made behind fleetd's back on one host only: found by asking the up hosts, then usable by name
    lone = f"lone-{uid}"
    docker_lab.daemons["d2"].docker("create", "--network", "none", "--name", lone, BUSYBOX_IMAGE, "true")
    cleanup.append(("d2", lone))
    assert endpoint.ok(cli, "inspect", "-f", "{{.Name}} {{.Node.Name}}", lone).strip() == f"/{lone} d2"
    endpoint.ok(cli, "rm", lone)
    assert docker_lab.daemons["d2"].docker("ps", "-aq", "-f", f"name={lone}").stdout == ""
    done = endpoint.cli(cli, "inspect", f"nosuch-{uid}")
    assert done.returncode != 0 and f"No such object: nosuch-{uid}" in done.stderr


# -- lifecycle --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cli", CLIS)
def test_create_start_logs_exec_stop_rm(
    endpoint: Endpoint, docker_lab: DockerLab, cli: str, uid: str, cleanup: list[tuple[str, str]]
) -> None:
    d2 = docker_lab.daemons["d2"]
    name = f"probe-{uid}"
    cleanup.append(("d2", name))
    endpoint.ok(cli, "create", "--network", "none", "--name", name, "-e", "constraint:node==d2",
                BUSYBOX_IMAGE, "sh", "-c", "echo hi; exec sleep 1000")  # fmt: skip
    assert endpoint.ok(cli, "ps", "-a", "-f", f"name={name}", "--format", "{{.Names}}").split() == [f"d2/{name}"]
    assert truth(d2, "-a", "-f", f"name={name}") == [name]
    endpoint.ok(cli, "start", name)
    assert endpoint.ok(cli, "ps", "-f", f"name={name}", "--format", "{{.Status}}").startswith("Up")
    endpoint.wait_for("hi in the logs", lambda: endpoint.cli(cli, "logs", name).stdout == "hi\n", within=10)
    assert endpoint.ok(cli, "exec", f"d2/{name}", "echo", "ok") == "ok\n"  # no -i: the CLI half-closes
    assert endpoint.ok(cli, "exec", "-i", f"d2/{name}", "cat", input="x\n") == "x\n"
    endpoint.ok(cli, "stop", "-t", "1", name)
    assert endpoint.ok(cli, "ps", "-q", "-f", f"name={name}") == ""
    assert d2.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "exited"
    endpoint.ok(cli, "rm", name)
    assert endpoint.ok(cli, "ps", "-aq", "-f", f"name={name}") == ""
    assert truth(d2, "-a", "-f", f"name={name}") == []


def test_logs_follow_streams_until_interrupted(endpoint: Endpoint, uid: str, cleanup: list[tuple[str, str]]) -> None:
    cli = DOCKER_CLIS[0]
    name = f"talker-{uid}"
    cleanup.append(("d1", name))
    endpoint.ok(cli, "run", "-d", "--network", "none", "--name", name, "-e", "constraint:node==d1",
                BUSYBOX_IMAGE, "sh", "-c", "while true; do echo tick; sleep 0.2; done")  # fmt: skip
    with subprocess.Popen([cli, "logs", "-f", f"d1/{name}"], stdout=subprocess.PIPE, env=endpoint.env()) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(5)]  # keeps arriving after the first answer
            assert lines == [b"tick\n"] * 5
            assert proc.poll() is None
        finally:
            proc.kill()


@pytest.mark.parametrize("cli", CLIS)
def test_run_detached_and_run_rm(
    endpoint: Endpoint, docker_lab: DockerLab, cli: str, uid: str, cleanup: list[tuple[str, str]]
) -> None:
    d1 = docker_lab.daemons["d1"]
    name = f"bg-{uid}"
    cleanup.append(("d1", name))
    started = time.monotonic()
    out = endpoint.ok(cli, "run", "-d", "--network", "none", "--name", name, "-e", "constraint:node==d1",
                      BUSYBOX_IMAGE, "sleep", "100", timeout=30)  # fmt: skip
    assert time.monotonic() - started < 20  # /wait's headers were flushed at once
    assert d1.docker("inspect", "-f", "{{.Id}} {{.State.Status}}", name).stdout.split() == [out.strip(), "running"]
    before = set(truth(d1, "-a"))
    assert endpoint.ok(cli, "run", "--rm", "--network", "none", "-e", "constraint:node==d1", BUSYBOX_IMAGE,
                       "echo", "hi", timeout=30) == "hi\n"  # fmt: skip
    assert set(truth(d1, "-a")) == before  # removed after it exited
    endpoint.ok(cli, "rm", "-f", f"d1/{name}")
    assert truth(d1, "-a", "-f", f"name={name}") == []


@pytest.mark.parametrize("cli", CLIS[:1])
def test_events_since_until_carry_the_node(
    endpoint: Endpoint, cli: str, uid: str, cleanup: list[tuple[str, str]]
) -> None:
    since = int(time.time()) - 1
    for host in ("d1", "d2"):
        name = f"ev-{uid}-{host}"
        cleanup.append((host, name))
        endpoint.ok(cli, "run", "-d", "--network", "none", "--name", name, "-e", f"constraint:node=={host}",
                    BUSYBOX_IMAGE, "true")  # fmt: skip
    until = int(time.time()) + 1
    time.sleep(1.2)
    out = endpoint.ok(cli, "events", "--since", str(since), "--until", str(until), "--filter", "event=start",
                      timeout=30)  # fmt: skip
    mine = [line for line in out.splitlines() if f"ev-{uid}" in line]
    assert any("node.name=d1" in line for line in mine), out
    assert any("node.name=d2" in line for line in mine), out


# -- docker-py --------------------------------------------------------------------------------------


def test_docker_py(endpoint: Endpoint, docker_lab: DockerLab, uid: str, cleanup: list[tuple[str, str]]) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=endpoint.docker_host, timeout=60)
    try:
        assert client.version()["ApiVersion"] == "1.41"
        web = client.containers.list(filters={"label": "app=web"})  # docker-py inspects each one it lists
        assert ("d2", "web2") in {(c.attrs["Node"]["Name"], c.name) for c in web}
        sparse = client.containers.list(all=True, sparse=True, filters={"label": "app=batch"})
        assert [c.attrs["Names"] for c in sparse] == [["/d1/job1"]]
        got = client.containers.get("d1/web1")
        assert got.name == "web1" and got.attrs["Node"]["Name"] == "d1"
        name = f"py-{uid}"
        cleanup.append(("d2", name))
        c = client.containers.run(BUSYBOX_IMAGE, ["echo", "hi"], name=name, detach=True, network_mode="none",
                                  environment=["constraint:node==d2"])  # fmt: skip
        assert c.wait(timeout=30)["StatusCode"] == 0
        assert c.logs() == b"hi\n"
        assert docker_lab.daemons["d2"].docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "exited"
        c.remove()
        assert len(client.images.list()) >= len(docker_lab.daemons)
    finally:
        client.close()



def test_rename_pause_top_stats_kill(endpoint: Endpoint, docker_lab: DockerLab, uid: str, cleanup: list[tuple[str, str]]) -> None:
    cli = DOCKER_CLIS[-1]
    d1 = docker_lab.daemons["d1"]
    first, second = f"ren-{uid}", f"renamed-{uid}"
    cleanup += [("d1", first), ("d1", second)]
    endpoint.ok(cli, "run", "-d", "--network", "none", "--name", f"d1/{first}", BUSYBOX_IMAGE, "sleep", "300")
    endpoint.ok(cli, "rename", f"d1/{first}", second)
    assert endpoint.ok(cli, "ps", "-f", f"name={second}", "--format", "{{.Names}}").split() == [f"d1/{second}"]
    endpoint.ok(cli, "pause", second)
    assert "(Paused)" in endpoint.ok(cli, "ps", "-f", f"name={second}", "--format", "{{.Status}}")
    assert d1.docker("inspect", "-f", "{{.State.Status}}", second).stdout.strip() == "paused"
    endpoint.ok(cli, "unpause", second)
    assert "sleep 300" in endpoint.ok(cli, "top", f"d1/{second}")
    assert second in endpoint.ok(cli, "stats", "--no-stream", "--format", "{{.Name}}", f"d1/{second}")
    src = endpoint.root / f"cp-{uid}.txt"
    src.write_text("copied\n")
    endpoint.ok(cli, "cp", str(src), f"d1/{second}:/tmp/in.txt")  # PUT .../archive
    assert d1.docker("exec", second, "cat", "/tmp/in.txt").stdout == "copied\n"
    endpoint.ok(cli, "cp", f"d1/{second}:/tmp/in.txt", str(endpoint.root / f"back-{uid}.txt"))  # HEAD + GET
    assert (endpoint.root / f"back-{uid}.txt").read_text() == "copied\n"
    endpoint.ok(cli, "kill", second)
    assert endpoint.ok(cli, "ps", "-a", "-f", f"name={second}", "--format", "{{.State}}").strip() == "exited"
    endpoint.ok(cli, "rm", second)


def test_events_stream_live(endpoint: Endpoint, uid: str, cleanup: list[tuple[str, str]]) -> None:
    cli = DOCKER_CLIS[0]
    name = f"live-{uid}"
    cleanup.append(("d2", name))
    with subprocess.Popen(
        [cli, "events", "--filter", "event=start", "--filter", f"container={name}"],
        stdout=subprocess.PIPE, env=endpoint.env(),
    ) as proc:  # fmt: skip
        try:
            time.sleep(1.0)  # the streams to every host are open
            endpoint.ok(cli, "run", "-d", "--network", "none", "--name", f"d2/{name}", BUSYBOX_IMAGE, "true")
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert " container start " in line and "node.name=d2" in line and f"name={name}" in line
            assert proc.poll() is None  # still streaming
        finally:
            proc.kill()


@pytest.mark.parametrize("cli", CLIS)
def test_exec_half_close_reaches_every_kind_of_host(endpoint: Endpoint, docker_lab: DockerLab, cli: str) -> None:
    """The end of stdin reaches the process on hosts over TCP, mutual TLS (close_notify) and podman."""
    targets = {"d1": "d1/web1", "tls": "tls/tls1", "podman": "podman/pod1"}
    for host, ref in targets.items():
        if host not in docker_lab.daemons:
            continue
        assert endpoint.ok(cli, "exec", ref, "echo", "ok", timeout=20) == "ok\n", host
        out = endpoint.ok(cli, "exec", "-i", ref, "sh", "-c", "cat; echo done", input="x\n", timeout=20)
        assert out == "x\ndone\n", host
