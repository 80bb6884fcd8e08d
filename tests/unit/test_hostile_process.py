"""``fleetd run`` against hostile daemons: memory stays bounded, a healthy host stays fresh.

One fleetd process polls a healthy daemon beside daemons that send a 200 MB /containers/json, an
endless chunked one, 256 MB of gzip-inflated JSON, and one that turns hostile after a good poll.
Peak RSS (VmHWM) is read from /proc; before the caps this process grew by gigabytes. The containers
cap is 16 MiB here (default 64 MiB) so that reading up to it fits in the poll timeout on a loaded machine.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.fakes import FakeEngine, FakeEngines, Fault
from tests.fakes.hostile import gzip_of_spaces

pytestmark = pytest.mark.asyncio(loop_scope="module")

MiB = 1024 * 1024
#: Peak RSS allowed: fleetd's own ~50 MB plus two caps being read at once, with a wide margin.
RSS_BOUND = 200 * MiB
WATCH_SECONDS = 8.0


@dataclass
class Run:
    api: str
    hosts: dict[str, dict[str, Any]]
    peak_rss: int
    rss: int
    healthy_polls: list[int]
    worst_healthz: float
    engines: dict[str, FakeEngine]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _eventually(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if await check():
                return
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    engines = FakeEngines()
    try:
        made = {
            "healthy": await engines(containers=40),
            "huge": await engines(containers=2),
            "endless": await engines(containers=2),
            "bomb": await engines(containers=2, hostile_bytes=256 * MiB),
            "turned": await engines(containers=7),
        }
        made["huge"].behaviour.faults["containers"] = Fault.HUGE
        made["endless"].behaviour.faults["containers"] = Fault.ENDLESS
        made["bomb"].behaviour.faults["containers"] = Fault.GZIP_BOMB
        await asyncio.to_thread(gzip_of_spaces, 256 * MiB)  # compressed once, before fleetd polls
        tmp = tmp_path_factory.mktemp("hostile")
        with socket_port() as port:
            pass
        cfg = tmp / "fleetd.yaml"
        hosts = "".join(f"  - {{name: {name}, url: '{eng.url}'}}\n" for name, eng in made.items())
        cfg.write_text(
            f"listen: 127.0.0.1:{port}\npoll: {{interval: 2s, timeout: 1500ms, max_backoff: 2s, max_answer: {{containers: 16MiB}}}}\n"
            f"snapshots: {{enabled: false}}\nlog: {{level: warning}}\nhosts:\n{hosts}"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetd", "run", "--config", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        api = f"http://127.0.0.1:{port}/api/v1"
        try:
            async with aiohttp.ClientSession() as http:

                async def turned_up() -> bool:
                    return bool((await _get(http, f"{api}/hosts/turned"))["state"] == "up")

                await _eventually(turned_up, 30, "fleetd did not poll the hosts")
                made["turned"].behaviour.faults["containers"] = Fault.ENDLESS
                polls: list[int] = []
                worst = 0.0
                until = time.monotonic() + WATCH_SECONDS
                while time.monotonic() < until:
                    started = time.monotonic()
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        assert resp.status == 200
                    worst = max(worst, time.monotonic() - started)
                    polls.append(
                        len([p for p in made["healthy"].paths() if p.endswith("/containers/json?all=1")])
                    )
                    await asyncio.sleep(0.5)
                listed = (await _get(http, f"{api}/hosts"))["hosts"]
                yield Run(
                    api=api,
                    hosts={h["name"]: h for h in listed},
                    peak_rss=_status_kib(proc.pid, "VmHWM"),
                    rss=_status_kib(proc.pid, "VmRSS"),
                    healthy_polls=polls,
                    worst_healthz=worst,
                    engines=made,
                )
        finally:
            if proc.returncode is None:
                proc.terminate()
            try:
                _out, err = await asyncio.wait_for(proc.communicate(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
            assert b"Traceback" not in err, err.decode()[-3000:]
    finally:
        await engines.aclose()


class socket_port:
    """A free loopback port (closed again before fleetd binds it)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def _report(run: Run) -> str:
    return f"peak RSS {run.peak_rss / MiB:.0f} MiB, RSS {run.rss / MiB:.0f} MiB, worst /healthz {run.worst_healthz * 1000:.0f} ms"


async def test_memory_stays_bounded_and_the_healthy_host_stays_fresh(run: Run) -> None:
    print(_report(run))
    assert run.peak_rss < RSS_BOUND, _report(run)
    healthy = run.hosts["healthy"]
    assert healthy["state"] == "up" and not healthy["stale"], healthy
    # Polled every 2 s throughout: at least 3 more polls over the 8 s watched.
    assert run.healthy_polls[-1] - run.healthy_polls[0] >= 3, run.healthy_polls
    assert run.worst_healthz < 2.0, _report(run)


async def test_a_200mb_containers_list_is_an_error_naming_the_cap(run: Run) -> None:
    huge = run.hosts["huge"]
    assert huge["state"] == "error", huge
    assert (
        re.search(r"announces 209,\d{3},\d{3} bytes", huge["last_error"])
        and "over the 16 MiB cap for containers" in huge["last_error"]
    )
    assert "raise poll.max_answer.containers in the config" in huge["last_error"]


async def test_an_endless_containers_list_stops_at_the_cap(run: Run) -> None:
    endless = run.hosts["endless"]
    assert endless["state"] == "error", endless
    assert "passed 16 MiB, over the 16 MiB cap for containers answers" in endless["last_error"]


async def test_a_gzip_bomb_is_refused_not_inflated(run: Run) -> None:
    bomb = run.hosts["bomb"]
    assert bomb["state"] == "error", bomb
    assert "Content-Encoding: gzip, which fleetd never asks for" in bomb["last_error"]


async def test_a_host_past_a_cap_keeps_its_last_good_data_marked_stale(run: Run) -> None:
    turned = run.hosts["turned"]
    assert turned["state"] == "error" and turned["stale"] is True, turned
    assert turned["containers"] == 7 and "over the 16 MiB cap" in turned["last_error"]
