"""fleetd against the lab's real daemons: dockerd 20.10 over TCP, a unix socket and mutual TLS, and podman.

Every test compares what fleetd's API says with what the daemon itself says (the docker CLI on that
daemon), through an app on a TestServer or, once, ``fleetd run`` as a real process. The helpers and the
poll figures (interval 1 s, timeout 0.5 s, backoff capped at 1 s) are in lab_fleet.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from fleetd.config.model import HostSettings
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab
from tests.integration.lab_fleet import (
    INTERVAL,
    MAX_BACKOFF,
    RFC3339,
    SAMPLE,
    TIMEOUT,
    Fleet,
    Json,
    assert_timestamps,
    daemon_truth,
    fleet_server,
    fleetd_process,
    host,
    lab_host,
    listed,
    tls_host,
    wait_until,
)

pytestmark = pytest.mark.docker

#: Added to every configured figure a clock check asserts: one SAMPLE of observation delay, the poll's
#: own latency (about 10-30 ms per dockerd poll here) and event-loop lag on a 2-core machine that also
#: runs three dockerds, their containerds and podman (occasionally 100-200 ms under load).
ALLOWANCE = 0.4
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

MakeFleet = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def make_fleet(tmp_path: Path) -> AsyncIterator[MakeFleet]:
    """``fleet = await make_fleet(host(...), ...)``: fleetd on a TestServer, ready; closed after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(*hosts: HostSettings) -> Fleet:
            return await stack.enter_async_context(fleet_server(tmp_path, *hosts))

        yield make


# -- the tests ------------------------------------------------------------------------------------


async def test_fleetd_run_lists_exactly_what_each_daemon_has(docker_lab: DockerLab, tmp_path: Path) -> None:
    d1, d2, tls = (docker_lab.daemons[n] for n in ("d1", "d2", "tls"))
    paths = tls.tls_paths
    assert paths is not None
    inventory: list[Json] = [
        {"name": "d1", "url": d1.tcp_url, "labels": {"rack": "r1"}},
        {"name": "d2", "url": d2.tcp_url},
        {
            "name": "tls",
            "url": tls.tcp_url,
            "tls": {"ca": str(paths.ca), "cert": str(paths.cert), "key": str(paths.key)},
        },
    ]
    async with fleetd_process(tmp_path, inventory) as (fleet, log):
        hosts = await fleet.hosts()
        containers = await fleet.containers()
        for daemon in (d1, d2, tls):
            h = hosts[daemon.name]
            assert (h["state"], h["stale"], h["last_error"]) == ("up", False, None), h
            assert h["api_version"] == "1.41" and h["server_version"].startswith("20.10."), h
            truth = await daemon_truth(daemon)
            assert listed(containers, daemon.name) == truth  # names, ids, states, labels, created
            assert {n: t.state == "running" for n, t in truth.items()} == {
                n: c.running for n, c in daemon.containers.items()
            }, "the lab's layout: web1/web2/db2/tls1 running, job1 exited"
            assert (h["containers"], h["running"]) == (
                len(truth),
                sum(t.state == "running" for t in truth.values()),
            )
        assert hosts["d1"]["labels"] == {"rack": "r1"}
        assert [(c["host"], c["name"]) for c in containers] == sorted(
            (c["host"], c["name"]) for c in containers
        )

        summary = await fleet.get("/api/v1/summary")
        assert summary["hosts"]["by_state"]["up"] == 3 and summary["hosts"]["stale"] == 0
        assert summary["containers"]["total"] == len(containers) and summary["containers"]["stale"] == 0
        assert summary["containers"]["by_state"] == {"exited": 1, "running": 4}

        checked = assert_timestamps(await fleet.get("/api/v1/hosts"))
        checked += assert_timestamps(containers)
        checked += assert_timestamps(summary)
        for name in hosts:
            checked += assert_timestamps(await fleet.get(f"/api/v1/hosts/{name}"))
        assert checked >= 3 * 2 + 5 * 2 + 1  # last_seen+last_attempt per host, created+observed_at, summary

        # Not a terminal: JSON lines; the start-up's hosts coming up are one line for the first round,
        # and no host changed state after it.
        events = [json.loads(line) for line in log().splitlines() if line.strip()]
        changes = sorted((e["event"], e["host"]) for e in events if e["event"].startswith("host "))
        assert changes == [], changes
        (done,) = [e for e in events if e["event"] == "first poll round done"]
        assert (done["up"], done["down"], done["error"]) == (3, 0, 0), done
        assert all(RFC3339.match(e["timestamp"]) for e in events)


async def test_duplicate_engine_id_flags_both_hosts_and_merges_nothing(
    docker_lab: DockerLab, make_fleet: MakeFleet
) -> None:
    d1, d2 = docker_lab.daemons["d1"], docker_lab.daemons["d2"]
    engine_id = (await d1.adocker("info", "--format", "{{.ID}}")).stdout.strip()
    assert engine_id and engine_id == (await d2.adocker("info", "--format", "{{.ID}}")).stdout.strip()
    fleet = await make_fleet(host("d1", d1.tcp_url), host("d2", d2.tcp_url))

    hosts = await fleet.hosts()
    for name, other in (("d1", "d2"), ("d2", "d1")):
        h = hosts[name]
        assert h["state"] == "up" and h["engine_id"] == engine_id
        assert h["duplicate_engine_id"] is True and h["duplicate_of"] == [other]
    containers = await fleet.containers()
    assert listed(containers, "d1") == await daemon_truth(d1)
    assert listed(containers, "d2") == await daemon_truth(d2)
    assert len({c["id"] for c in containers}) == len(containers) == 4
    summary = await fleet.get("/api/v1/summary")
    assert summary["hosts"]["total"] == 2 and summary["hosts"]["duplicate_engine_id"] == 2


async def test_stopped_daemon_goes_down_within_interval_plus_timeout_then_recovers(
    docker_lab: DockerLab, make_fleet: MakeFleet
) -> None:
    d2 = docker_lab.daemons["d2"]
    fleet = await make_fleet(
        host("d1", docker_lab.daemons["d1"].tcp_url),
        host("d2", d2.tcp_url),
        tls_host("tls", docker_lab.daemons["tls"]),
    )
    before = await fleet.containers(host="d2")
    assert {c["name"] for c in before} == set(d2.containers)

    samples: list[tuple[float, dict[str, tuple[str, bool]]]] = []  # (when, name -> (state, stale))

    async def sampler() -> None:
        while True:
            hosts = await fleet.hosts()
            samples.append((time.monotonic(), {n: (h["state"], h["stale"]) for n, h in hosts.items()}))
            await asyncio.sleep(SAMPLE)

    watcher = asyncio.create_task(sampler())
    try:
        stop_called = time.monotonic()
        await d2.astop()
        assert d2.stopped_at is not None
        await wait_until(lambda: _state_is(fleet, "d2", "down"), "d2 down", within=10)
        down = await fleet.hosts()
        during = await fleet.containers()
        summary = await fleet.get("/api/v1/summary")
        stale_only = await fleet.containers(stale="true")

        await d2.astart()
        back = await wait_until(lambda: _state_is(fleet, "d2", "up"), "d2 up again", within=10)
        await wait_until(
            lambda: _same_as_daemon(fleet, d2), "d2's containers as docker ps -a shows them", within=10
        )
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    # dockerd refuses new connections from SIGTERM on but keeps answering fleetd's keep-alive connection
    # while it stops its containers, so fleetd rightly says "up" until the process exits: time from there.
    went_down = next(t for t, states in samples if states["d2"][0] == "down")
    since_exit = went_down - d2.stopped_at
    budget = INTERVAL + TIMEOUT + ALLOWANCE
    print(
        f"\nd2: SIGTERM to exit {d2.stopped_at - stop_called:.2f}s; down {since_exit:.2f}s after exit "
        f"(budget {budget:g}s); up again {back:.2f}s after restart"
    )
    assert since_exit <= budget, f"down {since_exit:.2f}s after the daemon exited, budget {budget:g}s"
    assert back <= MAX_BACKOFF + TIMEOUT + ALLOWANCE, f"up again {back:.2f}s after restart"
    assert all(states["d1"] == states["tls"] == ("up", False) for _t, states in samples), "others stay up"

    h = down["d2"]
    # A failed poll, or (Engine events on) the event stream's end judged by one /_ping, said "down".
    assert h["stale"] is True and (h["consecutive_failures"] >= 1 or "event stream lost" in h["last_error"])
    assert "connection refused" in h["last_error"] and d2.tcp_url in h["last_error"], h["last_error"]
    assert all(down[n]["state"] == "up" and down[n]["stale"] is False for n in ("d1", "tls"))
    # The last good data stays, as observed: possibly "exited", if the last poll saw dockerd stop them.
    stale = [c for c in during if c["host"] == "d2"]
    assert {c["id"] for c in stale} == {c["id"] for c in before}
    # observed_at: the last poll, or a later event refresh (dockerd stopping its containers)
    assert all(c["stale"] and c["observed_at"] >= h["last_seen"] for c in stale), (stale, h["last_seen"])
    assert {c["state"] for c in stale} <= {"running", "exited"}
    assert not any(c["stale"] for c in during if c["host"] != "d2")
    assert {(c["host"], c["id"]) for c in stale_only} == {("d2", c["id"]) for c in before}
    assert summary["hosts"]["by_state"]["down"] == 1 and summary["hosts"]["by_state"]["up"] == 2
    assert summary["hosts"]["stale"] == 1 and summary["containers"]["stale"] == len(before)
    assert summary["containers"]["total"] == len(during)  # stale ones still count in the totals

    after = await fleet.containers(host="d2")
    assert not any(c["stale"] for c in after) and {c["state"] for c in after} == {"running"}
    assert (await fleet.hosts())["d2"]["last_error"] is None


async def _state_is(fleet: Fleet, name: str, state: str) -> bool:
    h = (await fleet.hosts())[name]
    return bool(h["state"] == state and h["stale"] is (state != "up"))


async def _same_as_daemon(fleet: Fleet, daemon: Daemon) -> bool:
    return listed(await fleet.containers(host=daemon.name), daemon.name) == await daemon_truth(daemon)


async def test_a_daemon_polled_over_its_unix_socket(docker_lab: DockerLab, make_fleet: MakeFleet) -> None:
    d1 = docker_lab.daemons["d1"]
    assert d1.unix_url is not None
    fleet = await make_fleet(host("d1-unix", d1.unix_url), host("d1-tcp", d1.tcp_url))
    hosts = await fleet.hosts()
    assert hosts["d1-unix"]["url"] == d1.unix_url
    for name in ("d1-unix", "d1-tcp"):
        h = hosts[name]
        assert (h["state"], h["api_version"], h["containers"]) == ("up", "1.41", len(d1.containers)), h
    containers = await fleet.containers()
    truth = await daemon_truth(d1)
    assert listed(containers, "d1-unix") == listed(containers, "d1-tcp") == truth
    # One daemon under two names is indistinguishable from two clones: both flagged, neither dropped.
    assert hosts["d1-unix"]["duplicate_of"] == ["d1-tcp"]


async def test_mutual_tls_and_what_a_misconfigured_tls_host_says(
    docker_lab: DockerLab, make_fleet: MakeFleet
) -> None:
    tls = docker_lab.daemons["tls"]
    fleet = await make_fleet(
        tls_host("tls", tls),
        tls_host("no-client-cert", tls, client_cert=False),
        tls_host("unknown-ca", tls, ca=False),
        host("plain-http", tls.tcp_url),
    )
    hosts = await fleet.hosts()
    ok = hosts["tls"]
    assert (ok["state"], ok["api_version"], ok["last_error"]) == ("up", "1.41", None), ok
    assert listed(await fleet.containers(host="tls"), "tls") == await daemon_truth(tls)

    # dockerd (Go, TLS 1.3) lets the handshake finish without a client certificate, then answers the
    # first request with a "bad certificate" alert: the message must name the daemon, the TLS layer
    # and the certificate, so the reader looks at tls.cert/tls.key rather than at the network.
    refused = hosts["no-client-cert"]
    assert refused["state"] == "down" and refused["stale"] is False, refused
    message = refused["last_error"]
    assert tls.tcp_url in message and re.search(r"\b(TLS|SSL)\b", message), message
    assert "certificate" in message.lower(), message
    assert not re.search(r"refused|closed the connection|no answer within", message), message
    assert "rejected fleetd's TLS client certificate" in message and "tls.cert" in message, message

    untrusted = hosts["unknown-ca"]  # the system CAs cannot verify the lab's server certificate
    assert untrusted["state"] == "down", untrusted
    assert (
        "TLS handshake" in untrusted["last_error"] and "certificate verify failed" in untrusted["last_error"]
    )

    plain = hosts["plain-http"]  # an HTTP answer, just not a usable one: error, not down
    assert plain["state"] == "error" and "400" in plain["last_error"] and "HTTPS" in plain["last_error"]
    for name in ("no-client-cert", "unknown-ca", "plain-http"):
        assert await fleet.containers(host=name) == []


def podman_daemon_version(daemon: Daemon) -> str:
    return str(daemon.request("GET", "/version")[1]["Version"])


@pytest.mark.podman
async def test_podman_api_service(podman_daemon: Daemon, make_fleet: MakeFleet) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{podman_daemon.base_url}/_ping") as resp,
    ):
        offered = resp.headers["Api-Version"]
    fleet = await make_fleet(lab_host(podman_daemon))
    h = (await fleet.hosts())["podman"]
    assert (h["state"], h["stale"], h["server_version"]) == (
        "up",
        False,
        podman_daemon_version(podman_daemon),
    ), h
    # podman 4.3 answers every /info with a fresh random UUID as ID: it identifies nothing, so it is
    # shown as volatile, never kept, never a duplicate.
    assert h["engine_id"] is None and h["engine_id_volatile"] is True, h
    assert h["duplicate_engine_id"] is False, h
    assert h["api_version"] == offered  # podman 4.3 offers 1.41, below fleetd's newest
    containers = await fleet.containers()
    assert listed(containers, "podman") == await daemon_truth(podman_daemon)
    pod1 = next(c for c in containers if c["name"] == "pod1")
    assert pod1["state"] == "running" and pod1["labels"] == {"app": "web"}
    assert assert_timestamps(containers) == 2 * len(containers)


async def test_containers_changed_with_the_cli_show_after_the_next_poll(
    docker_lab: DockerLab, make_fleet: MakeFleet
) -> None:
    d1 = docker_lab.daemons["d1"]
    fleet = await make_fleet(host("d1", d1.tcp_url))
    name = f"probe-{uuid.uuid4().hex[:8]}"

    async def shows(state: str | None) -> bool:
        found = {c["name"]: c["state"] for c in await fleet.containers(host="d1", name=name)}
        return found == ({name: state} if state else {})

    waits: dict[str, float] = {}
    try:
        await d1.adocker(
            "run", "--detach", "--name", name, "--network", "none", "--label", "app=probe",
            BUSYBOX_IMAGE, "sleep", "1000000",
        )  # fmt: skip
        waits["run"] = await wait_until(lambda: shows("running"), f"{name} running")
        await d1.adocker("stop", "-t", "0", name)
        waits["stop"] = await wait_until(lambda: shows("exited"), f"{name} exited")
        await d1.adocker("rm", name)
        waits["rm"] = await wait_until(lambda: shows(None), f"{name} gone")
    finally:
        await d1.adocker("rm", "--force", name, check=False)
    print(f"\nCLI change visible after: {', '.join(f'{k} {v:.2f}s' for k, v in waits.items())}")
    # Polls start at most one interval apart (jitter only shortens the gap): fresh within one interval.
    assert max(waits.values()) <= INTERVAL + ALLOWANCE, waits
    assert listed(await fleet.containers(), "d1") == await daemon_truth(d1)


async def test_label_selector_across_daemons(docker_lab: DockerLab, make_fleet: MakeFleet) -> None:
    daemons = [docker_lab.daemons[n] for n in ("d1", "d2", "podman") if n in docker_lab.daemons]
    fleet = await make_fleet(*(lab_host(d) for d in daemons))
    web = {(c["host"], c["name"]) for c in await fleet.containers(label="app=web")}
    expected = {(d.name, n) for d in daemons for n, c in d.containers.items() if c.labels.get("app") == "web"}
    truth = {(d.name, n) for d in daemons for n in await daemon_truth(d, "label=app=web")}
    assert web == expected == truth
    assert expected >= {("d1", "web1"), ("d2", "web2")}
    with_app = await fleet.containers(label="app")
    assert {(c["host"], c["name"]) for c in with_app} == {
        (d.name, n) for d in daemons for n in await daemon_truth(d, "label=app")
    }
