"""SIGHUP reload of ``fleetd run`` against the lab's real dockerd: add, remove, change, break.

Every case is checked through fleetd's API. The poll interval is long (60 s), so within the test each host
is polled once when it joins and never again on its own: an unchanged host whose ``last_seen`` or
``last_attempt`` moves across a reload was reset or re-polled by it, which the reload must not do.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.integration.lab import DockerLab
from tests.integration.systemd_root import free_loopback_port

pytestmark = pytest.mark.docker

T = TypeVar("T")
Json = dict[str, Any]
INTERVAL = "60s"


async def eventually(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 15) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def write_config(path: Path, listen: str, hosts: dict[str, str]) -> None:
    lines = [
        f"listen: {listen}",
        f"poll: {{interval: {INTERVAL}, timeout: 5s}}",
        "snapshots: {enabled: false}",
        "hosts:",
        *(f"  - {{name: {name}, url: '{url}'}}" for name, url in hosts.items()),
    ]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Fleetd:
    """``fleetd run`` as a process, its config file, its log and its API."""

    process: asyncio.subprocess.Process
    config: Path
    log: Path
    listen: str
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://{self.listen}"

    def write(self, hosts: dict[str, str]) -> None:
        write_config(self.config, self.listen, hosts)

    def hup(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    async def hosts(self) -> dict[str, Json]:
        async with self.http.get(f"{self.base}/api/v1/hosts") as resp:
            assert resp.status == 200, await resp.text()
            return {h["name"]: h for h in (await resp.json())["hosts"]}

    async def hosts_when(self, check: Callable[[dict[str, Json]], bool]) -> dict[str, Json] | None:
        try:
            hosts = await self.hosts()
        except aiohttp.ClientConnectionError:
            return None
        return hosts if check(hosts) else None

    async def metric(self, name: str) -> float | None:
        async with self.http.get(f"{self.base}/metrics") as resp:
            found = re.search(rf"^{name} (\S+)$", await resp.text(), re.M)
        return float(found.group(1)) if found else None


StartFleetd = Callable[[dict[str, str]], Awaitable[Fleetd]]


@pytest.fixture
async def start_fleetd(tmp_path: Path) -> AsyncIterator[StartFleetd]:
    """Starts ``fleetd run`` with an inventory; stops it with SIGTERM (SIGKILL after 15 s) afterwards."""
    started: list[asyncio.subprocess.Process] = []
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def start(hosts: dict[str, str]) -> Fleetd:
            config, log = tmp_path / "fleetd.yaml", tmp_path / "fleetd.log"
            listen = f"127.0.0.1:{free_loopback_port()}"
            write_config(config, listen, hosts)
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "fleetd", "run", "--config", str(config),
                    stdout=out, stderr=asyncio.subprocess.STDOUT, env=env,
                )  # fmt: skip
            started.append(process)
            return Fleetd(process, config, log, listen, http)

        try:
            yield start
        finally:
            for process in started:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(process.wait(), 15)
                    except TimeoutError:
                        process.kill()
                        await process.wait()


def same_poll(before: Json, after: Json) -> bool:
    return (before["last_seen"], before["last_attempt"]) == (after["last_seen"], after["last_attempt"])


async def test_reload_add_remove_change_and_break_against_real_dockerd(
    docker_lab: DockerLab, start_fleetd: StartFleetd
) -> None:
    d1, d2 = docker_lab.daemons["d1"], docker_lab.daemons["d2"]
    assert d1.unix_url and d2.unix_url
    fleetd = await start_fleetd({"alpha": d1.tcp_url, "beta": d2.tcp_url})

    def all_up(*names: str) -> Callable[[dict[str, Json]], bool]:
        return lambda hosts: sorted(hosts) == sorted(names) and all(hosts[n]["state"] == "up" for n in names)

    first = await eventually("alpha and beta up", lambda: fleetd.hosts_when(all_up("alpha", "beta")))
    assert first["alpha"]["server_version"] and first["alpha"]["containers"] >= 1

    # Add: gamma is d2 again, through its unix socket.
    fleetd.write({"alpha": d1.tcp_url, "beta": d2.tcp_url, "gamma": d2.unix_url})
    fleetd.hup()
    added = await eventually("gamma up", lambda: fleetd.hosts_when(all_up("alpha", "beta", "gamma")))
    assert added["gamma"]["url"] == d2.unix_url
    assert same_poll(first["alpha"], added["alpha"]) and same_poll(first["beta"], added["beta"])
    assert added["alpha"]["state"] == added["beta"]["state"] == "up"

    # Remove: beta leaves the aggregate; the others are untouched.
    fleetd.write({"alpha": d1.tcp_url, "gamma": d2.unix_url})
    fleetd.hup()
    removed = await eventually("beta gone", lambda: fleetd.hosts_when(lambda h: "beta" not in h))
    assert sorted(removed) == ["alpha", "gamma"]
    async with fleetd.http.get(f"{fleetd.base}/api/v1/hosts/beta") as resp:
        assert resp.status == 404
    assert same_poll(first["alpha"], removed["alpha"]) and same_poll(added["gamma"], removed["gamma"])

    # Change: alpha moves from d1's TCP port to d1's unix socket and reconnects; gamma is untouched.
    fleetd.write({"alpha": d1.unix_url, "gamma": d2.unix_url})
    fleetd.hup()

    def alpha_moved(hosts: dict[str, Json]) -> bool:
        alpha = hosts["alpha"]
        return alpha["url"] == d1.unix_url and alpha["state"] == "up" and not same_poll(first["alpha"], alpha)

    changed = await eventually("alpha polled over d1's socket", lambda: fleetd.hosts_when(alpha_moved))
    assert changed["alpha"]["last_seen"] > first["alpha"]["last_seen"]
    assert changed["alpha"]["server_version"] == first["alpha"]["server_version"]  # the same daemon
    assert same_poll(added["gamma"], changed["gamma"])
    assert await fleetd.metric("fleetd_config_last_reload_successful") == 1.0

    # Break: an invalid file is rejected, the running inventory stays, the log says where the problem is.
    fleetd.config.write_text(fleetd.config.read_text().replace(d2.unix_url, "ftp://127.0.0.1/nowhere"))
    fleetd.hup()

    async def rejected() -> bool | None:
        return True if await fleetd.metric("fleetd_config_last_reload_successful") == 0.0 else None

    await eventually("the reload failure in /metrics", rejected)
    kept = await fleetd.hosts()
    assert sorted(kept) == ["alpha", "gamma"] and kept["gamma"]["url"] == d2.unix_url
    assert same_poll(changed["alpha"], kept["alpha"]) and same_poll(changed["gamma"], kept["gamma"])
    assert all(h["state"] == "up" for h in kept.values())
    log = fleetd.log.read_text()
    assert "reload rejected" in log and f"{fleetd.config}:6: hosts[1].url" in log, log[-2000:]

    fleetd.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(fleetd.process.wait(), 15) == 0
