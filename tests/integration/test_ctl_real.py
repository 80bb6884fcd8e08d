"""The client commands (``fleetd ps``, ``hosts``, ``stop``, ``logs``, ...) as subprocesses against a real
``fleetd run`` in front of real dockerd daemons; every output is parsed back and checked against the
API and, for actions, against the daemons themselves (docker CLI)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ctl_kit import CtlFleet, ctl_fleetd, parse_table, poll_until
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab

pytestmark = pytest.mark.docker

ANSI = re.compile(r"\x1b\[[0-9;]*m")
VOLATILE_HOST = {"last_seen", "last_attempt", "last_poll_duration", "consecutive_failures"}


@pytest.fixture(scope="module")
def fleet(docker_lab: DockerLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtlFleet]:
    with ctl_fleetd(list(docker_lab.docker_daemons()), tmp_path_factory.mktemp("ctl")) as fleet:
        yield fleet


def run_ok(fleet: CtlFleet, *args: str, **kw: Any) -> str:
    result = fleet.cli(*args, **kw)
    assert result.returncode == 0, f"fleetd {' '.join(args)}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


def _key(c: dict[str, Any]) -> tuple[str, str, str, str]:
    return (c["host"], c["id"][:12], c["name"], c["image"])


def test_ps_table_rows_match_the_api(fleet: CtlFleet) -> None:
    for args, query in ((("ps",), "?state=running"), (("ps", "-a"), "")):
        rows = parse_table(run_ok(fleet, *args))
        api = fleet.containers(query)
        assert api, "the lab has containers"
        assert [(r["HOST"], r["CONTAINER ID"], r["NAME"], r["IMAGE"]) for r in rows] == [_key(c) for c in api]
        for row, c in zip(rows, api, strict=True):
            assert row["STATUS"].split(" ")[0] == c["status"].split(" ")[0]  # "Up …" / "Exited (0) …"
            assert row["STALE"] == ""
    running = parse_table(run_ok(fleet, "ps"))
    assert {r["NAME"] for r in running} >= {"web1", "web2", "db2"} and "job1" not in {
        r["NAME"] for r in running
    }
    filtered = parse_table(run_ok(fleet, "ps", "-a", "--label", "app=web", "--host", "d2"))
    assert [(r["HOST"], r["NAME"]) for r in filtered] == [("d2", "web2")]


def test_ps_quiet_gives_the_ids_docker_ps_q_gives(fleet: CtlFleet, docker_lab: DockerLab) -> None:
    for daemon in docker_lab.docker_daemons():
        expected = sorted(daemon.docker("ps", "-q").stdout.split())
        assert expected
        assert sorted(run_ok(fleet, "ps", "-q", "--host", daemon.name).split()) == expected
        everything = sorted(daemon.docker("ps", "-aq").stdout.split())
        assert sorted(run_ok(fleet, "ps", "-aq", "--host", daemon.name).split()) == everything


def test_json_output_round_trips_to_the_api_objects(fleet: CtlFleet) -> None:
    printed = json.loads(run_ok(fleet, "ps", "-a", "--json"))
    api = fleet.containers()

    def steady(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in ("observed_at", "status")}

    assert [steady(c) for c in printed] == [steady(c) for c in api]
    hosts = json.loads(run_ok(fleet, "hosts", "--json"))
    api_hosts = fleet.api("/api/v1/hosts")["hosts"]
    assert [{k: v for k, v in h.items() if k not in VOLATILE_HOST} for h in hosts] == [
        {k: v for k, v in h.items() if k not in VOLATILE_HOST} for h in api_hosts
    ]
    out = run_ok(fleet, "ps", "-a", "--json")  # stable for scripts: sorted keys, two-space indent
    assert out == json.dumps(json.loads(out), indent=2, sort_keys=True) + "\n"


def test_format_templates_like_docker(fleet: CtlFleet) -> None:
    api = fleet.containers("?state=running")
    lines = run_ok(fleet, "ps", "--format", '{{.Host}}/{{.Names}} {{.ID}} {{.Label "app"}}').splitlines()
    assert lines == [f"{c['host']}/{c['name']} {c['id'][:12]} {c['labels'].get('app', '')}" for c in api]
    table = run_ok(fleet, "ps", "-a", "--format", "table {{.Host}}\\t{{.Names}}\\t{{.State}}")
    rows = parse_table(table)
    assert table.splitlines()[0].split() == ["HOST", "NAMES", "STATE"]
    assert [(r["HOST"], r["NAMES"], r["STATE"]) for r in rows] == [
        (c["host"], c["name"], c["state"]) for c in fleet.containers()
    ]
    each = [json.loads(line) for line in run_ok(fleet, "ps", "--format", "json").splitlines()]
    assert [c["id"] for c in each] == [c["id"] for c in api]
    bad = fleet.cli("ps", "--format", "{{.Nope}}")
    assert bad.returncode != 0 and "unknown field '.Nope'" in bad.stderr and ".Host" in bad.stderr


def test_hosts_table_and_one_host(fleet: CtlFleet, docker_lab: DockerLab) -> None:
    rows = {r["NAME"]: r for r in parse_table(run_ok(fleet, "hosts"))}
    api = {h["name"]: h for h in fleet.api("/api/v1/hosts")["hosts"]}
    assert set(rows) == set(api) == {d.name for d in docker_lab.docker_daemons()}
    for name, h in api.items():
        assert rows[name]["STATE"].startswith("up ")
        assert int(rows[name]["CONTAINERS"]) == h["containers"] and int(rows[name]["RUNNING"]) == h["running"]
        assert rows[name]["ENGINE"] == f"{h['server_version']} (API {h['api_version']})"
        assert rows[name]["LAST ERROR"] == ""
    assert run_ok(fleet, "hosts", "-q").split() == list(api)
    detail = run_ok(fleet, "host", "d1")
    engine = fleet.api("/api/v1/hosts/d1")["engine"]
    assert re.search(rf"^Engine ID:\s+{re.escape(engine['engine_id'])}$", detail, re.M)
    assert re.search(r"^Same engine ID as:\s+d2, tls$", detail, re.M)  # the lab's daemons share key.json
    assert "insecure_transport" in detail  # d1 is plain TCP
    missing = fleet.cli("host", "nope")
    assert missing.returncode == 1 and "no host named 'nope'" in missing.stderr


def test_images_lists_each_tag_with_its_hosts(fleet: CtlFleet) -> None:
    rows = parse_table(run_ok(fleet, "images"))
    api = fleet.api("/api/v1/images")["images"]
    assert [(r["REPOSITORY"] + ":" + r["TAG"], r["IMAGE ID"]) for r in rows] == [
        (i["tags"][0], i["id"].removeprefix("sha256:")[:12]) for i in api
    ]
    assert {r["HOSTS"] for r in rows} == {f"{len(i['hosts'])}: {', '.join(i['hosts'])}" for i in api}
    assert BUSYBOX_IMAGE.rpartition(":")[0] in {r["REPOSITORY"] for r in rows}


def _run_labelled(daemon: Daemon, name: str, label: str) -> str:
    """A container that exits on SIGTERM at once, so a stop never waits out its grace period."""
    script = "trap 'exit 0' TERM; sleep 100000 & wait"
    out = daemon.docker("run", "-d", "--network", "none", "--name", name, "--label", label, BUSYBOX_IMAGE,
                        "sh", "-c", script)  # fmt: skip
    return out.stdout.strip()


def _state(daemon: Daemon, name: str) -> str:
    return daemon.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()


def test_stop_and_start_by_label_reach_the_daemons_and_a_down_host_fails(
    fleet: CtlFleet, docker_lab: DockerLab
) -> None:
    d1, d2 = docker_lab.daemons["d1"], docker_lab.daemons["d2"]
    tag = secrets.token_hex(3)
    label = f"ctl-test={tag}"
    names = {d1: f"ctl-a-{tag}", d2: f"ctl-b-{tag}"}
    for daemon, name in names.items():
        _run_labelled(daemon, name, label)
    try:
        poll_until(lambda: len(fleet.containers(f"?label={label}")) == 2, "fleetd sees both containers")
        dry = parse_table(run_ok(fleet, "stop", "--label", label, "--dry-run"))
        assert {(r["HOST"], r["NAME"]) for r in dry} == {("d1", names[d1]), ("d2", names[d2])}
        unconfirmed = fleet.cli("stop", "--label", label)  # no terminal, no --yes: nothing happens
        assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
        assert _state(d1, names[d1]) == "running"

        results = parse_table(run_ok(fleet, "stop", "--label", label, "--yes", "-t", "5"))
        assert {(r["HOST"], r["NAME"], r["RESULT"]) for r in results} == {
            ("d1", names[d1], "ok"),
            ("d2", names[d2], "ok"),
        }
        assert _state(d1, names[d1]) == _state(d2, names[d2]) == "exited"
        nothing = fleet.cli("start", "--label", label, "--host-label", "nothing=matches", "--yes")
        assert nothing.returncode == 1 and "no host has nothing=matches" in nothing.stderr
        run_ok(fleet, "start", f"d1/{names[d1]}", f"d2/{names[d2]}", "--yes")
        assert _state(d1, names[d1]) == _state(d2, names[d2]) == "running"

        d2.stop()
        poll_until(lambda: fleet.api("/api/v1/hosts/d2")["state"] == "down", "fleetd sees d2 down")
        stale = parse_table(
            run_ok(fleet, "ps", "-a", "--label", label)
        )  # dockerd stopped them on its way down
        assert {r["HOST"]: r["STALE"].startswith("stale") for r in stale} == {"d1": False, "d2": True}
        failed = fleet.cli("stop", "--label", label, "--yes", "-t", "5")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        outcome = {r["HOST"]: r for r in parse_table(failed.stdout)}
        assert outcome["d1"]["RESULT"] == "ok" and outcome["d2"]["RESULT"] == "failed"
        assert "d2" in outcome["d2"]["DETAIL"]
        assert f"d2/{names[d2]}" in failed.stderr and f"d1/{names[d1]}" not in failed.stderr
        assert _state(d1, names[d1]) == "exited"
        as_json = fleet.cli("start", "--label", label, "--yes", "--json")
        assert as_json.returncode == 1
        doc = json.loads(as_json.stdout)
        assert doc["summary"] == {"targets": 2, "ok": 1, "failed": 1}
    finally:
        if not d2.running:
            d2.start()
        for daemon, name in names.items():
            daemon.docker("rm", "-f", name, check=False)


def test_messages_name_the_problem_and_the_role(fleet: CtlFleet) -> None:
    down = fleet.cli("ps", FLEETD_URL="http://127.0.0.1:9")
    assert (
        down.returncode == 1 and "Is fleetd running?" in down.stderr and "connection refused" in down.stderr
    )
    viewer = fleet.cli("stop", "d1/web1", "--yes", role="viewer")
    assert (
        viewer.returncode == 1 and "permission denied" in viewer.stderr and "needs operator" in viewer.stderr
    )
    anonymous = fleet.cli("logs", "d1/web1", role=None)
    assert (
        anonymous.returncode == 1
        and "role operator" in anonymous.stderr
        and "FLEETD_TOKEN" in anonymous.stderr
    )
    wrong = fleet.cli("ps", FLEETD_TOKEN="not-a-token")
    assert wrong.returncode == 1 and "refused the token from FLEETD_TOKEN" in wrong.stderr
    usage = fleet.cli("stop")
    assert usage.returncode == 2 and "HOST/CONTAINER" in usage.stderr


def test_token_file_and_url_from_the_config(fleet: CtlFleet, tmp_path: Path) -> None:
    token = tmp_path / "viewer.token"
    token.write_text(fleet.tokens["viewer"] + "\n")
    env = fleet.env(role=None)
    del env["FLEETD_URL"]
    result = subprocess.run([*_cli(), "hosts", "-q", "--config", str(fleet.config), "--token-file", str(token)],
                            env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [h["name"] for h in fleet.api("/api/v1/hosts")["hosts"]]


def test_tls_options_against_an_https_listener(docker_lab: DockerLab, tmp_path: Path) -> None:
    from tests.integration.lab import make_certificates

    server, _client = make_certificates(tmp_path / "certs")
    with ctl_fleetd([docker_lab.daemons["d1"]], tmp_path, listen_tls=server) as https:
        assert https.url.startswith("https://")
        untrusted = https.cli("hosts", "-q")
        assert (
            untrusted.returncode == 1 and "--cacert" in untrusted.stderr and "not trusted" in untrusted.stderr
        )
        assert https.cli("hosts", "-q", "--cacert", str(server.ca)).stdout.split() == ["d1"]
        assert https.cli("hosts", "-q", "--insecure").stdout.split() == ["d1"]
        env = https.env()
        del env["FLEETD_URL"]
        found = subprocess.run([*_cli(), "hosts", "-q", "--config", str(https.config)], env=env | {"FLEETD_CACERT": str(server.ca)},
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert found.returncode == 0 and found.stdout.split() == ["d1"], found.stderr  # listen_tls → https://


def _cli() -> list[str]:
    from tests.integration.ctl_kit import fleetd_cli

    return fleetd_cli()


def test_no_colour_unless_a_terminal(fleet: CtlFleet) -> None:
    from tests.integration.ctl_pty import run_in_pty

    piped = run_ok(fleet, "hosts")
    assert "\x1b" not in piped
    coloured = run_in_pty(fleet, ["hosts"], until=lambda out: "LAST ERROR" in out and out.count("\n") >= 3)
    assert ANSI.search(coloured), coloured
    plain = run_in_pty(fleet, ["hosts"], until=lambda out: out.count("\n") >= 3, NO_COLOR="1")
    assert not ANSI.search(plain.replace("\x1b[0m", "")), plain


def test_logs_prints_lines_and_follows_a_line_echoed_later(fleet: CtlFleet, docker_lab: DockerLab) -> None:
    from tests.integration.ctl_pty import Stream

    d1 = docker_lab.daemons["d1"]
    name = f"ctl-log-{secrets.token_hex(3)}"
    d1.docker("run", "-d", "--network", "none", "--name", name, BUSYBOX_IMAGE, "sh", "-c",
              "echo first line; echo oops >&2; exec sleep 100000")  # fmt: skip
    try:
        poll_until(lambda: fleet.containers(f"?name={name}"), "fleetd sees the container")
        once = fleet.cli("logs", f"d1/{name}")
        assert once.returncode == 0 and once.stdout == "first line\n" and once.stderr == "oops\n"
        with Stream([*_cli(), "logs", "-f", f"d1/{name}"], fleet.env()) as stream:
            stream.wait_for("first line", within=15)
            marker = f"echoed-{secrets.token_hex(4)}"
            d1.docker("exec", name, "sh", "-c", f"echo {marker} > /proc/1/fd/1")
            out = stream.wait_for(marker, within=15)
        assert (
            "first line\n" in out and f"{marker}\n" in out and out.index("first line") < out.index(marker)
        ), out
        removed = fleet.cli("rm", "-f", f"d1/{name}", "--yes")
        assert removed.returncode == 0 and parse_table(removed.stdout)[0]["RESULT"] == "ok", removed.stderr
        assert d1.docker("inspect", name, check=False).returncode != 0  # gone from the daemon
    finally:
        d1.docker("rm", "-f", name, check=False)


def test_logs_follow_by_label_merges_hosts_with_prefixes(fleet: CtlFleet, docker_lab: DockerLab) -> None:
    from tests.integration.ctl_pty import Stream

    tag = secrets.token_hex(3)
    label = f"ctl-logs={tag}"
    names = {docker_lab.daemons["d1"]: f"ctl-ml-a-{tag}", docker_lab.daemons["d2"]: f"ctl-ml-b-{tag}"}
    for daemon, name in names.items():
        _run_labelled(daemon, name, label)
    try:
        poll_until(lambda: len(fleet.containers(f"?label={label}")) == 2, "fleetd sees both containers")
        with Stream([*_cli(), "logs", "-f", "--label", label, "--tail", "0"], fleet.env()) as stream:
            d1 = next(iter(names))
            for attempt in range(60):  # until the stream is open (the command may take seconds to start)
                d1.docker("exec", names[d1], "sh", "-c", f"echo warm-up-{attempt} > /proc/1/fd/1")
                if "warm-up-" in stream.wait_for("warm-up-", within=1, must=False):
                    break
            markers = {}
            for daemon, name in names.items():
                markers[daemon.name] = f"hello-from-{daemon.name}-{secrets.token_hex(3)}"
                daemon.docker("exec", name, "sh", "-c", f"echo {markers[daemon.name]} > /proc/1/fd/1")
            stream.wait_for(markers["d2"], within=15)
            out = stream.wait_for(markers["d1"], within=15)
        for daemon, name in names.items():
            assert f"{daemon.name}/{name} │ {markers[daemon.name]}\n" in out, out
        assert "\x1b" not in out  # a pipe: no colour
    finally:
        for daemon, name in names.items():
            daemon.docker("rm", "-f", name, check=False)


def test_watch_in_a_terminal_shows_a_container_started_meanwhile(
    fleet: CtlFleet, docker_lab: DockerLab
) -> None:
    from tests.integration.ctl_pty import PtyProcess

    d1 = docker_lab.daemons["d1"]
    tag = secrets.token_hex(3)
    name = f"ctl-watch-{tag}"
    with PtyProcess(
        [*_cli(), "ps", "--watch", "--label", f"ctl-watch={tag}"], fleet.env(), columns=200
    ) as term:
        term.wait_for("live (event stream)", within=15)
        assert name not in term.output
        _run_labelled(d1, name, f"ctl-watch={tag}")
        try:
            screen = term.wait_for(name, within=25)  # an event, or at worst the 10 s re-read
            by_event = screen
        finally:
            d1.docker("rm", "-f", name, check=False)
    # The row arrived with an event (added, or the changed that follows it within the same frame), not
    # with --watch's 10 s re-read.
    assert re.search(rf"last event: container\.(added|changed) d1/{re.escape(name)}", by_event), by_event[-2000:]


def _added_in(out: str, name: str) -> bool:
    """A whole line of ``fleetd events --json`` output announces ``name`` as added."""
    lines = out[: out.rfind("\n") + 1].splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return any(e["type"] == "container.added" and e["container"].get("name") == name for e in events)


def test_events_follows_the_fleet(fleet: CtlFleet, docker_lab: DockerLab) -> None:
    from tests.integration.ctl_pty import Stream

    d1 = docker_lab.daemons["d1"]
    tag = secrets.token_hex(3)
    started: list[str] = []
    out = ""
    with Stream([*_cli(), "events", "--json", "--host", "d1", "--type", "container"], fleet.env()) as stream:
        # The command prints nothing before its first event, so when it has subscribed is not visible: a
        # container started before that is (rightly) not in its stream, and one created before it and
        # started after it is there only as changed. Start one every 5 s until one is there as added.
        try:
            for attempt in range(6):
                name = f"ctl-events-{tag}-{attempt}"
                _run_labelled(d1, name, "ctl-events=1")
                started.append(name)
                deadline = time.monotonic() + 5
                while not _added_in(out := stream.output, name):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                else:
                    break
        finally:
            for name in started:
                d1.docker("rm", "-f", name, check=False)
    assert "fleetd:" not in out, out  # the stream stayed open, without an error
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    added = [e for e in events if e["type"] == "container.added" and e["container"]["name"] == started[-1]]
    assert added, out
    assert added[0]["host"] == "d1" and added[0]["container"]["labels"] == {"ctl-events": "1"}


def test_snapshot_verbs_over_the_api(fleet: CtlFleet) -> None:
    first = run_ok(fleet, "snapshot", "take")
    assert re.match(r"^snapshot \d+ taken at \S+Z: 3 hosts \(3 up", first), first
    taken = json.loads(run_ok(fleet, "snapshot", "take", "--json"))
    ids = [int(i) for i in run_ok(fleet, "snapshot", "list", "-q").split()]
    assert ids[0] == taken["id"] and ids == sorted(ids, reverse=True)
    listed = parse_table(run_ok(fleet, "snapshot", "list"))
    assert listed[0]["ID"] == str(taken["id"]) and listed[0]["TRIGGER"] == "on-demand"
    shown = run_ok(fleet, "snapshot", "show", "latest")
    assert f"snapshot {taken['id']} taken at" in shown and "d1" in shown
    csv = run_ok(fleet, "snapshot", "show", str(taken["id"]), "--format", "csv")
    assert csv.startswith("snapshot_id,") and f"\n{taken['id']}," in csv
    diff = fleet.cli("snapshot", "diff", str(ids[1]), str(ids[0]), "--json")
    assert diff.returncode in (0, 1)
    assert json.loads(diff.stdout) == fleet.api(f"/api/v1/snapshots/{ids[0]}/diff?against={ids[1]}")
    bad = fleet.cli("snapshot", "diff", "999999")
    assert bad.returncode == 2 and "999999" in bad.stderr


def test_bash_completion_script(fleet: CtlFleet) -> None:
    script = run_ok(fleet, "completion", "bash")
    probe = script + '\nCOMP_WORDS=(fleetd st); COMP_CWORD=1; _fleetd; echo "${COMPREPLY[*]}"\n'
    probe += 'COMP_WORDS=(fleetd stop d); COMP_CWORD=2; _fleetd; echo "${COMPREPLY[*]}"\n'
    probe += 'COMP_WORDS=(fleetd ps --st); COMP_CWORD=2; _fleetd; echo "${COMPREPLY[*]}"\n'
    result = subprocess.run(
        ["bash", "-c", probe], env=fleet.env(), capture_output=True, text=True, timeout=60
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[0].split() == ["stop", "start"]
    assert {"d1/web1", "d1/job1", "d2/web2", "d2/db2"} <= set(lines[1].split())
    assert lines[2].split() == ["--state"]


def test_zsh_completion_script_loads_in_zsh(fleet: CtlFleet, tmp_path: Path) -> None:
    from tests.integration.conftest import REQUIRE_DOCKER, unavailable

    if not os.path.exists("/bin/zsh"):
        unavailable("zsh is not installed (.ci/run installs it)", REQUIRE_DOCKER)
    script = tmp_path / "_fleetd"
    script.write_text(run_ok(fleet, "completion", "zsh"))
    assert script.read_text().startswith("#compdef fleetd")
    check = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    probe = f"autoload -U compinit; compinit -u -d {tmp_path}/zcd; source {script}; print -r -- ${{_comps[fleetd]}}"
    loaded = subprocess.run(
        ["zsh", "-f", "-c", probe], env=fleet.env(), capture_output=True, text=True, timeout=60
    )
    assert loaded.stdout.strip() == "_fleetd", loaded.stdout + loaded.stderr
