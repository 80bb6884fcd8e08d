"""The live fleet on uvloop (``FLEETD_EVENT_LOOP=uvloop``): the raw event stream, the kept connection
(pings, lean lists, targeted refreshes) and the shutdown's abort of pooled connections all ran on
asyncio's transports only; uvloop's are no ``asyncio.Transport`` subclasses, and an isinstance check
on them made every event stream fail to open (it timed out, reconnected and timed out again)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fleetd.config import load_config
from fleetd.dockerapi import DockerClient
from fleetd.dockerapi.events import event_params
from fleetd.dockerapi.pinger import raw_pinger
from fleetd.dockerapi.raw_events import RawEventStream
from fleetd.runtime import Fleet
from tests.fakes import FakeEngine, docker_20_10

uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'fleetd[fast]')")


async def until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_raw_event_stream_and_kept_connection_on_uvloop() -> None:
    async def scenario() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with FakeEngine(docker_20_10(containers=2)) as eng, DockerClient(eng.url) as client:
            await client.containers.list_body(all=True)  # the API version is known
            pinger = raw_pinger(client)
            assert pinger is not None
            try:
                await pinger.ping(timeout=2.0)
                got = []
                params = event_params(None, None, {"type": ["container"]})
                async with RawEventStream(pinger, client, params, open_timeout=2.0) as stream:
                    ended = stream.begin(got.append)
                    first = next(iter(eng.state.containers))
                    eng.set_state(first, "exited", 3)
                    await until(lambda: any(e.action == "die" for e in got), 3.0, "the die event")
                    assert not ended.done()
                status, body = await pinger.get("/_ping", timeout=2.0, max_body=64)
                assert status == 200 and body == b"OK"
            finally:
                pinger.close()

    uvloop.run(scenario())


def test_a_watched_fleet_on_uvloop_shows_a_change_at_once_and_closes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeEngine(docker_20_10(containers=3)) as eng:
            cfg = tmp_path / "fleetd.yaml"
            cfg.write_text(
                "snapshots: {enabled: false}\npoll: {interval: 60s, timeout: 2s, liveness: 2s}\n"
                f"hosts:\n  - {{name: a, url: '{eng.url}'}}\n"
            )
            fleet = Fleet(load_config(cfg))
            async with fleet:
                record = fleet.state.get("a")
                assert record is not None
                await until(lambda: record.status.value == "up" and len(record.containers) == 3, 5.0, "the first poll")
                victim = next(c for c in eng.state.containers.values() if c.state == "running")
                await asyncio.sleep(0.5)  # the watcher subscribes after the first round
                eng.set_state(victim.id, "exited", 137)
                # no poll is due for a minute: only the event stream and a targeted refresh can tell
                await until(
                    lambda: any(c.id == victim.id and c.state == "exited" for c in record.containers),
                    5.0,
                    "the refreshed row",
                )
                pings = len([p for p in eng.paths() if p.endswith("/_ping")])
                await until(lambda: len([p for p in eng.paths() if p.endswith("/_ping")]) > pings, 5.0, "a liveness ping")
                assert record.status.value == "up"
            closing = asyncio.get_running_loop().time()
            await fleet.aclose()
            assert asyncio.get_running_loop().time() - closing < 5.0

    uvloop.run(scenario())
