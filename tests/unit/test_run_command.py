"""``fleetd run`` as a real process: refuses bad config, serves, stops cleanly on signals."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.fakes import FakeEngines

TOKEN_SHA = hashlib.sha256(b"t0ken").hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fleetd",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_run_refuses_an_invalid_config_with_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("listen: 127.0.0.1:8080\npoll:\n  interval: 5s\n  timeout: 10s\nhosts: []\n")
    proc = await _start(cfg)
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert f"{cfg}:4: poll.timeout:" in err.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serves_then_exits_zero_quickly_without_traceback(
    tmp_path: Path, fake_engine: FakeEngines, sig: signal.Signals
) -> None:
    eng = await fake_engine(containers=3)
    hung = await fake_engine(containers=1)
    from tests.fakes.behaviour import Fault

    hung.behaviour.faults["*"] = Fault.HANG  # a hung poll in flight must not hold up shutdown
    port = _free_port()
    cfg = tmp_path / "fleetd.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\npoll: {{interval: 2s, timeout: 1500ms}}\nsnapshots: {{enabled: false}}\n"
        f"hosts:\n  - {{name: one, url: '{eng.url}'}}\n  - {{name: hung, url: '{hung.url}'}}\n"
    )
    proc = await _start(cfg)
    try:
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/api/v1/hosts/one") as resp:
                        if resp.status == 200 and (await resp.json())["state"] == "up":
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "fleetd did not come up"
                await asyncio.sleep(0.1)
        proc.send_signal(sig)
        started = time.monotonic()
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        elapsed = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert elapsed < 5.0, elapsed
    text = out.decode() + err.decode()
    assert "Traceback" not in text
    events = [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]
    assert "fleetd listening" in events and events[-1] == "fleetd stopped"


async def test_sigterm_keeps_its_promise_with_hung_hosts_and_requests_in_flight(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    """50 hung hosts, a stream and a long request open: exit 0 within shutdown_grace + 2 s."""
    from tests.fakes.behaviour import Fault

    hung = await fake_engine(containers=1)
    hung.behaviour.faults["*"] = Fault.HANG
    port = _free_port()
    cfg = tmp_path / "fleetd.yaml"
    hosts = "".join(f"  - {{name: h{i:02d}, url: '{hung.url}'}}\n" for i in range(50))
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\npoll: {{interval: 60s, timeout: 30s}}\nsnapshots: {{enabled: false}}\n"
        f"shutdown_grace: 3s\nauth: {{tokens: [{{name: ci, role: operator, token_sha256: '{TOKEN_SHA}'}}]}}\n"
        f"hosts:\n{hosts}"
    )
    proc = await _start(cfg)
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "fleetd did not come up"
                await asyncio.sleep(0.1)
            auth = {"Authorization": "Bearer t0ken"}
            stream = await http.get(f"http://127.0.0.1:{port}/api/v1/events", headers=auth)  # stays open
            # an operation the hung daemon never answers (its timeout is 30 s)
            slow = asyncio.create_task(
                http.post(f"http://127.0.0.1:{port}/api/v1/containers/h00/web/start", headers=auth)
            )
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            out, err = await asyncio.wait_for(proc.communicate(), 20)
            elapsed = time.monotonic() - started
            stream.close()
            slow.cancel()
            await asyncio.gather(slow, return_exceptions=True)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert stream.status == 200
    assert elapsed < 3.0 + 2.0 + 1.0, elapsed  # shutdown_grace + CLOSE_ALLOWANCE + process exit
    assert "Traceback" not in out.decode() + err.decode()
