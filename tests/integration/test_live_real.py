"""The live fleet against real dockerd and podman: Engine events between 60 s polls, the SSE stream out.

A test-side proxy (tests/fakes/proxy.py) sits in front of each daemon's TCP port, so a test can cut
or freeze just the /events connection while the polls and refreshes pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fleetd.api.keys import FLEET
from tests.fakes.proxy import EventsProxy
from tests.integration.lab import BUSYBOX_IMAGE, Daemon, DockerLab
from tests.integration.livekit import POLL, Watch, containers, fleetd, host, named, watch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def proxied(daemon: Daemon) -> AsyncIterator[EventsProxy]:
    async with EventsProxy(("127.0.0.1", daemon.port)) as proxy:
        yield proxy


async def run(daemon: Daemon, *args: str) -> str:
    done = await daemon.adocker(*args)
    return done.stdout.strip()


def run_args(name: str, *extra: str) -> list[str]:
    return [
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        name,
        "--stop-timeout",
        "1",
        *extra,
        BUSYBOX_IMAGE,
        "sleep",
        "1000",
    ]


async def timed(coro: Any) -> float:
    """Await ``coro``; the loop time when it finished (the CLI returned)."""
    await coro
    return asyncio.get_running_loop().time()


async def within(w: Watch, pred: Any, since: float, what: str, limit: float = 2.0) -> dict[str, Any]:
    f = await w.until(pred, timeout=limit + 3.0, what=what)
    took = asyncio.get_running_loop().time() - since
    assert took <= limit, f"{what} took {took:.2f}s"
    return f.data


async def test_run_stop_rm_exec_and_health_with_a_60s_poll(docker_lab: DockerLab, tmp_path: Path) -> None:
    d1 = docker_lab.daemons["d1"]
    async with proxied(d1) as proxy, fleetd(tmp_path, [host("d1", proxy.url)]) as client:
        async with client.get("/api/v1/containers?host=d1") as resp:
            head = resp.headers["X-Fleet-Event-Id"]
        w = await watch(client, headers={"Last-Event-ID": head})
        try:
            done = await timed(run(d1, *run_args("lv-a")))
            added = await within(w, named("lv-a", "container.added"), done, "added")
            assert added["container"]["state"] in ("created", "running")
            await within(w, named("lv-a", state="running"), done, "running")
            assert (await containers(client, "d1"))["lv-a"]["state"] == "running"
            done = await timed(run(d1, "stop", "-t", "0", "lv-a"))
            died = await within(w, named("lv-a", "container.changed", state="exited"), done, "exited")
            assert died["action"] == "die" and died["exit_code"] == 137
            assert (await containers(client, "d1"))["lv-a"]["state"] == "exited"
            done = await timed(run(d1, "rm", "lv-a"))
            await within(w, named("lv-a", "container.removed"), done, "removed")
            assert "lv-a" not in await containers(client, "d1")
            await w.drain(0.3)

            seen = len(w.frames)
            for _ in range(30):
                await run(d1, "exec", "web1", "true")
            assert await w.drain(1.0) == []  # 90 Engine events, not one frame
            assert len(w.frames) == seen

            # One frame per health transition; each probe is an exec and makes none.
            health = ["--health-cmd", "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "1"]
            await run(d1, *run_args("lv-h", *health))
            await w.until(named("lv-h", state="running"), what="lv-h running")
            await w.until(named("lv-h", health="unhealthy"), timeout=8, what="unhealthy")
            await run(d1, "exec", "lv-h", "sh", "-c", ": > /tmp/ok")
            await w.until(named("lv-h", health="healthy"), timeout=8, what="healthy")
            await asyncio.sleep(3.0)  # three more probes
            await w.drain(0.3)
            health_frames = [f for f in w.frames if named("lv-h")(f) and "health" in f.data.get("fields", [])]
            assert [f.data["container"]["health"] for f in health_frames] == [
                "starting",
                "unhealthy",
                "healthy",
            ]
            assert all(f.data["action"] == "health_status" for f in health_frames[1:])
            after = w.frames.index(health_frames[-1])
            assert [f for f in w.frames[after + 1 :] if named("lv-h")(f)] == []  # probes make no frames
        finally:
            w.close()
            await d1.adocker("rm", "-f", "lv-a", "lv-h", check=False)


async def test_resume_gets_exactly_the_missed_frames_and_a_new_fleetd_resets(
    docker_lab: DockerLab, tmp_path: Path
) -> None:
    d1 = docker_lab.daemons["d1"]
    async with fleetd(tmp_path, [host("d1", d1.tcp_url)]) as client:
        steady = await watch(client)
        first = await watch(client)
        try:
            await run(d1, *run_args("lv-r"))
            await first.until(named("lv-r", state="running"))
            await first.drain(0.3)
            last = first.frames[-1].id
            assert last is not None
            first.close()
            await run(d1, "stop", "-t", "0", "lv-r")
            await run(d1, "rm", "lv-r")
            await steady.until(named("lv-r", "container.removed"))
            await steady.drain(0.3)
            start = next(i for i, f in enumerate(steady.frames) if f.id == last)
            missed = [f.id for f in steady.frames[start + 1 :]]
            assert missed, "the changes made no frames"
            stale = steady.frames[0].id
            again = await watch(client, f"?last_event_id={stale}", headers={"Last-Event-ID": last})
            got = [f.id for f in await again.drain(0.5)]
            again.close()
            assert got == missed  # exactly the missed frames: no duplicates, none lost
        finally:
            steady.close()
            await d1.adocker("rm", "-f", "lv-r", check=False)
    async with fleetd(tmp_path, [host("d1", d1.tcp_url)]) as other:  # another fleetd process (epoch)
        w = await watch(other, headers={"Last-Event-ID": last})
        reset = await w.reader.next()
        w.close()
        assert reset.event == "reset" and reset.data["reason"] == "epoch"


async def test_a_3s_cut_during_docker_stop_replays_the_die_without_a_resync(
    docker_lab: DockerLab, tmp_path: Path
) -> None:
    d1 = docker_lab.daemons["d1"]
    await run(d1, *run_args("lv-c"))
    async with proxied(d1) as proxy, fleetd(tmp_path, [host("d1", proxy.url)]) as client:
        w = await watch(client)
        try:
            await run(d1, "exec", "web1", "true")  # an event before the cut: the cursor's witness
            await asyncio.sleep(0.3)
            proxy.block_events(3.0)
            await run(d1, "stop", "-t", "0", "lv-c")
            died = await w.until(named("lv-c", state="exited"), timeout=12, what="replayed die")
            assert died.data["action"] == "die"
            resynced = await w.until(lambda f: f.event == "host.resynced", timeout=5)
            assert resynced.data["gap"] is False
            resumed = proxy.event_requests()[-1]
            assert "since=" in resumed and "." in resumed.split("since=")[1]
            assert not [f for f in w.frames if f.event == "host.changed"]  # never down: polls answered
        finally:
            w.close()
            await d1.adocker("rm", "-f", "lv-c", check=False)


async def test_300_events_during_a_cut_force_a_resync_with_gap(docker_lab: DockerLab, tmp_path: Path) -> None:
    d1 = docker_lab.daemons["d1"]
    await run(d1, *run_args("lv-g"))
    async with proxied(d1) as proxy, fleetd(tmp_path, [host("d1", proxy.url)]) as client:
        w = await watch(client)
        try:
            await run(d1, "exec", "web1", "true")
            await asyncio.sleep(0.3)
            proxy.block_events(8.0)
            await run(d1, "stop", "-t", "0", "lv-g")

            def creates() -> None:  # 300 exec_create events: the ring of 256 overflows
                for _ in range(300):
                    status, _ = d1.request("POST", "/containers/web1/exec", {"Cmd": ["true"]})
                    assert status == 201

            await asyncio.to_thread(creates)
            resynced = await w.until(lambda f: f.event == "host.resynced", timeout=15, what="resync")
            assert resynced.data["gap"] is True
            assert (await containers(client, "d1"))["lv-g"]["state"] == "exited"
        finally:
            w.close()
            await d1.adocker("rm", "-f", "lv-g", check=False)


async def test_a_restarted_daemon_leaves_no_stale_running_rows(docker_lab: DockerLab, tmp_path: Path) -> None:
    d2 = docker_lab.daemons["d2"]
    await run(d2, *run_args("lv-s"))  # no restart policy: exited after the daemon's restart
    async with fleetd(tmp_path, [host("d2", d2.tcp_url)]) as client:
        w = await watch(client)
        try:
            assert (await containers(client, "d2"))["lv-s"]["state"] == "running"
            await d2.astop()
            down = await w.until(lambda f: f.event == "host.changed" and f.data["after"] == "down", timeout=8)
            assert down.data["before"] == "up"
            await d2.astart()
            await w.until(
                lambda f: f.event == "host.changed" and f.data["after"] == "up", timeout=20, what="up"
            )
            await asyncio.sleep(1.0)
            rows = await containers(client, "d2")
            truth = dict(
                line.split(" ", 1)
                for line in (await run(d2, "ps", "-a", "--format", "{{.Names}} {{.State}}")).splitlines()
            )
            assert {n: r["state"] for n, r in rows.items()} == truth
            assert rows["lv-s"]["state"] == "exited"
        finally:
            w.close()
            await d2.adocker("rm", "-f", "lv-s", check=False)


async def test_a_frozen_daemon_goes_down_within_liveness_and_timeout(
    docker_lab: DockerLab, tmp_path: Path
) -> None:
    d2 = docker_lab.daemons["d2"]
    async with fleetd(tmp_path, [host("d2", d2.tcp_url)]) as client:
        w = await watch(client, "?type=host")
        pid = d2.pid
        loop = asyncio.get_running_loop()
        try:
            os.kill(pid, signal.SIGSTOP)
            t0 = loop.time()
            await w.until(lambda f: f.data.get("after") == "down", timeout=POLL.liveness + POLL.timeout + 6)
            took = loop.time() - t0
            assert took <= POLL.liveness + POLL.timeout + 2.0, took
        finally:
            os.kill(pid, signal.SIGCONT)
        try:
            t1 = loop.time()
            await w.until(lambda f: f.data.get("after") == "up", timeout=20, what="back up")
            print(f"down after {took:.1f}s, up {loop.time() - t1:.1f}s after SIGCONT")
        finally:
            w.close()


async def test_podman_run_rm_and_log_rotation_match_podman_ps(podman_daemon: Daemon, tmp_path: Path) -> None:
    pm = podman_daemon
    podman_host = dataclasses.replace(host("podman", ""), timeout=5.0)  # podman's /info is slow
    async with (
        proxied(pm) as proxy,
        fleetd(tmp_path, [dataclasses.replace(podman_host, url=proxy.url)]) as client,
    ):
        w = await watch(client)
        try:
            done = await timed(run(pm, *run_args("lv-p")))
            await within(w, named("lv-p", state="running"), done, "podman running")
            done = await timed(run(pm, "stop", "-t", "0", "lv-p"))
            await within(w, named("lv-p", state="exited"), done, "podman exited")
            done = await timed(run(pm, "rm", "lv-p"))
            await within(w, named("lv-p", "container.removed"), done, "podman removed")
            proxy.sever()  # from now on the stream is opened with since=, which podman ends at a rotation
            await w.until(lambda f: f.event == "host.resynced", timeout=8, what="resumed after the cut")
            for i in range(6):  # enough events to rotate the small event log (lab: events_logfile_max_size)
                await run(pm, *run_args(f"lv-p{i}"))
                await run(pm, "rm", "-f", f"lv-p{i}")
            truth = {
                line.split(" ", 1)[0]: line.split(" ", 1)[1].split()[0].lower().replace("up", "running")
                for line in pm.podman("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines()
            }
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            rows: dict[str, str] = {}
            while loop.time() - t0 < 10:  # podman writes events to a file it polls every 250 ms
                rows = {n: r["state"] for n, r in (await containers(client, "podman")).items()}
                if rows == truth:
                    break
                await w.drain(0.2)
            assert rows == truth
            settled = loop.time() - t0
            # initial, after the cut, and at least one more: a rotation ended the since= stream (P5)
            assert len(proxy.event_requests()) >= 3, proxy.event_requests()
            print(
                f"podman: equal to podman ps -a {settled:.1f}s after the last rm; /events requests: "
                f"{len(proxy.event_requests())}, resyncs: "
                f"{[f.data['gap'] for f in w.frames if f.event == 'host.resynced']}"
            )
        finally:
            w.close()
            for i in range(6):
                await pm.adocker("rm", "-f", f"lv-p{i}", check=False)


async def test_podman_health_checks_make_one_frame_per_transition(
    podman_daemon: Daemon, tmp_path: Path
) -> None:
    """podman 4.3 lists no health and sends health_status at the start of every probe: fleetd asks
    the container's health when the probe ends, so each transition makes one frame, and a poll
    (whose list says nothing of health) keeps it. The probes run by hand (no systemd in the lab)."""
    pm = podman_daemon
    podman_host = dataclasses.replace(host("podman", ""), timeout=5.0)  # podman's /info is slow
    async with (
        proxied(pm) as proxy,
        fleetd(tmp_path, [dataclasses.replace(podman_host, url=proxy.url)]) as client,
    ):
        w = await watch(client)

        async def podman(*args: str) -> None:
            await asyncio.to_thread(pm.podman, *args, check=args[0] != "healthcheck")

        try:
            check = ["--health-cmd", "test -e /tmp/ok", "--health-interval", "1h", "--health-retries", "1"]
            await podman(
                "run", "-d", "--network", "none", "--name", "lv-ph", *check, BUSYBOX_IMAGE, "sleep", "1000"
            )
            await w.until(named("lv-ph", state="running"), timeout=8, what="running")
            await podman("healthcheck", "run", "lv-ph")  # fails: unhealthy
            await w.until(named("lv-ph", health="unhealthy"), timeout=5, what="unhealthy")
            await podman("healthcheck", "run", "lv-ph")  # unhealthy again: no frame
            await podman("exec", "lv-ph", "sh", "-c", ": > /tmp/ok")
            await podman("healthcheck", "run", "lv-ph")
            await w.until(named("lv-ph", health="healthy"), timeout=5, what="healthy")
            await podman("healthcheck", "run", "lv-ph")  # healthy again: no frame
            await client.app[FLEET].poller.refresh("podman")  # a full poll: its list tells no health
            await w.drain(1.5)
            health_frames = [
                f for f in w.frames if named("lv-ph")(f) and "health" in f.data.get("fields", [])
            ]
            # as with dockerd: "starting" when it starts (when podman's inspect already says so right
            # after the start event), then one frame per change, none for a probe that changes nothing
            seen = [f.data["container"]["health"] for f in health_frames]
            assert seen in (["starting", "unhealthy", "healthy"], ["unhealthy", "healthy"]), seen
            # the first result may be learnt by the inspect after the start event (podman's event file
            # is read every 250 ms: "start" can come after the probe ran); the second only by a probe
            assert health_frames[-2].data["action"] in ("start", "health_status")
            assert health_frames[-1].data["action"] == "health_status"
            after = w.frames.index(health_frames[-1])
            assert [f for f in w.frames[after + 1 :] if named("lv-ph")(f)] == []  # the poll changed nothing
            assert (await containers(client, "podman"))["lv-ph"]["health"] == "healthy"
        finally:
            w.close()
            await pm.adocker("rm", "-f", "lv-ph", check=False)
