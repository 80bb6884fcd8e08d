"""Webhooks against real dockerd: a stopped daemon, a killed container and a failing health check each
reach the receiver as one POST, while another receiver that never answers holds nothing up."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from fleetd.api.keys import FLEET
from fleetd.config.notify import WebhookSettings
from tests.harness import eventually
from tests.integration.lab import BUSYBOX_IMAGE, DockerLab
from tests.unit.opskit import host, settings, start_client
from tests.webhookkit import Receiver

pytestmark = pytest.mark.docker


async def test_host_down_and_container_died_are_posted_and_a_hung_receiver_delays_nothing(
    docker_lab: DockerLab, tmp_path: Path
) -> None:
    d1, d2 = docker_lab.daemons["d1"], docker_lab.daemons["d2"]
    name = f"hook-{secrets.token_hex(4)}"
    sick = f"sick-{secrets.token_hex(4)}"
    run = ("run", "-d", "--network", "none")
    d1.docker(*run, "--name", name, "--label", "hook=yes", BUSYBOX_IMAGE, "sleep", "1000")
    try:
        async with Receiver() as rx, Receiver(hang=True) as hung:
            hooks = (
                WebhookSettings(name="ops", url=rx.url, token="lab-token"),
                WebhookSettings(name="stuck", url=hung.url, timeout=30.0, retries=0, queue=1),
            )
            hosts = [host(n, d.tcp_url, interval=1.0, timeout=1.0) for n, d in (("d1", d1), ("d2", d2))]
            client = await start_client(settings(tmp_path, hosts, notify=hooks))
            try:
                await asyncio.to_thread(d1.docker, "kill", name)  # SIGKILL: exit code 137
                await eventually(lambda: "container.died" in rx.kinds(), timeout=10.0)
                [died] = [b for b in rx.received if b["kind"] == "container.died"]
                assert died["host"] == "d1" and died["container"]["name"] == name and died["exit_code"] == 137
                assert died["container"]["labels"] == {"hook": "yes"}

                # A health check that fails from the start: starting, then unhealthy.
                health = (
                    "--health-cmd",
                    "/bin/busybox test -f /ok",
                    "--health-interval",
                    "1s",
                    "--health-retries",
                    "1",
                )
                await asyncio.to_thread(
                    d1.docker, *run, "--name", sick, *health, BUSYBOX_IMAGE, "sleep", "1000"
                )
                await eventually(lambda: "container.unhealthy" in rx.kinds(), timeout=15.0)
                [unhealthy] = [b for b in rx.received if b["kind"] == "container.unhealthy"]
                assert (
                    unhealthy["container"]["name"] == sick and unhealthy["container"]["health"] == "unhealthy"
                )

                await d2.astop()
                await eventually(lambda: "host.down" in rx.kinds(), timeout=15.0)
                [down] = [b for b in rx.received if b["kind"] == "host.down"]
                assert (down["host"], down["before"], down["after"]) == ("d2", "up", "down")
                assert down["error"]
                assert rx.headers[0]["Authorization"] == "Bearer lab-token"
                assert hung.attempts >= 1  # it got the first one, and never answered
                stuck = client.app[FLEET].webhooks.senders["stuck"]
                assert stuck.pending <= 1
            finally:
                await client.close()
    finally:
        if not d2.running:
            await d2.astart()
        d1.docker("rm", "--force", name, sick, check=False)


async def test_an_oom_killed_container_is_posted_as_oom_and_died(
    docker_lab: DockerLab, tmp_path: Path
) -> None:
    """Needs the Engine's own events (the feed): a poll cannot tell an OOM kill from a SIGKILL."""
    d1 = docker_lab.daemons["d1"]
    name = f"oom-{secrets.token_hex(4)}"
    async with Receiver() as rx:
        hooks = (
            WebhookSettings(name="oom", url=rx.url, events=frozenset({"container.oom", "container.died"})),
        )
        client = await start_client(
            settings(tmp_path, [host("d1", d1.tcp_url, interval=30.0, timeout=5.0)], notify=hooks)
        )
        try:
            limits = ("--memory", "16m", "--memory-swap", "16m")
            hog = (
                "sh",
                "-c",
                "x=a; while true; do x=$x$x; done",
            )  # doubles a string until the kernel kills it
            await asyncio.to_thread(
                d1.docker, "run", "-d", "--network", "none", *limits, "--name", name, BUSYBOX_IMAGE, *hog
            )
            await eventually(lambda: {"container.oom", "container.died"} <= set(rx.kinds()), timeout=30.0)
            oom = next(b for b in rx.received if b["kind"] == "container.oom")
            died = next(b for b in rx.received if b["kind"] == "container.died")
            assert oom["container"]["name"] == name and oom["action"] == "oom"
            assert died["exit_code"] == 137
            oom_killed = d1.docker("inspect", "--format", "{{.State.OOMKilled}}", name).stdout.strip()
            assert oom_killed == "true"  # the daemon agrees it was the OOM killer
        finally:
            await client.close()
            d1.docker("rm", "--force", name, check=False)
