"""A reload is all or nothing: a bad TLS file or an unreadable inventory changes nothing, and the next
good reload still applies (issue 16)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from fleetd import runtime
from fleetd.config import TLSSettings, load_config
from fleetd.config.live import ReloadFailed
from fleetd.fleet.records import HostStatus
from fleetd.runtime import Fleet
from tests.fakes import FakeEngines
from tests.harness import FleetClient, eventually
from tests.unit.tlskit import pem


def write(cfg: Path, hosts: list[str]) -> None:
    cfg.write_text(
        "listen: 127.0.0.1:8080\npoll: {interval: 2s, timeout: 1s}\nsnapshots: {enabled: false}\n"
        "hosts:\n" + "".join(f"  - {h}\n" for h in hosts)
    )


async def test_a_reload_adding_a_bad_tls_file_changes_nothing(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    a, b, c, d = [await fake_engine(containers=2) for _ in range(4)]
    (tmp_path / "bad-ca.pem").write_text("not a certificate\n")
    cfg = tmp_path / "fleetd.yaml"
    write(
        cfg, [f"{{name: a, url: '{a.url}'}}", f"{{name: b, url: '{b.url}'}}", f"{{name: c, url: '{c.url}'}}"]
    )
    fleet = Fleet(load_config(cfg))
    client = FleetClient(fleet)
    await client.start_server()
    try:
        state = fleet.state
        await eventually(lambda: state.is_ready())
        before = {r.name: r for r in state.records()}
        in_force = fleet.config.current
        # b removed before the bad host, d added after it: the half-applied reload of 7c3402b.
        bad = f"{{name: bad, url: 'tcp://127.0.0.1:{d.port}', tls: {{ca: bad-ca.pem}}}}"
        write(cfg, [f"{{name: a, url: '{a.url}'}}", bad, f"{{name: d, url: '{d.url}'}}"])
        with capture_logs() as logs, pytest.raises(ReloadFailed) as caught:
            await fleet.reload(cfg)
        assert caught.value.problems == [
            f"{cfg}:6: hosts[1].tls.ca: {tmp_path / 'bad-ca.pem'} holds no PEM certificate (empty or not PEM)"
        ]
        assert [r.name for r in state.records()] == ["a", "b", "c"]
        assert all(state.get(name) is record for name, record in before.items())
        assert fleet.config.current is in_force and fleet.config.last_reload_ok is False
        rejected = next(e for e in logs if e["event"].startswith("reload rejected"))
        assert rejected["problems"] == caught.value.problems
        assert d.requests == []  # no host was touched

        write(cfg, [f"{{name: a, url: '{a.url}'}}", f"{{name: d, url: '{d.url}'}}"])
        report = await fleet.reload(cfg)  # the next reload works
        assert report.added == ("d",) and set(report.removed) == {"b", "c"}
        await eventually(lambda: (r := state.get("d")) is not None and r.status is HostStatus.UP)
    finally:
        await client.close()


async def test_tls_contexts_are_built_before_any_host_is_touched(
    tmp_path: Path, fake_engine: FakeEngines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even TLS material that passed the config check (then changed on disk) cannot half-apply a reload."""
    a, b = [await fake_engine(containers=2) for _ in range(2)]
    cfg = tmp_path / "fleetd.yaml"
    write(cfg, [f"{{name: a, url: '{a.url}'}}", f"{{name: b, url: '{b.url}'}}"])
    fleet = Fleet(load_config(cfg))
    client = FleetClient(fleet)
    await client.start_server()
    try:
        state = fleet.state
        await eventually(lambda: state.is_ready())
        pem().write(tmp_path / "tls")
        write(cfg, [f"{{name: a, url: '{a.url}'}}"])
        good = load_config(cfg)
        (tmp_path / "tls" / "key.pem").write_bytes(pem().other_key)  # now it no longer matches
        tls = TLSSettings(cert=tmp_path / "tls" / "cert.pem", key=tmp_path / "tls" / "key.pem")
        late = dataclasses.replace(
            good.hosts[0], name="late", url="tcp://127.0.0.1:9", tls=tls, source="x.yaml:9"
        )
        monkeypatch.setattr(runtime, "load_config", lambda _path: dataclasses.replace(good, hosts=(late,)))
        with pytest.raises(ReloadFailed) as caught:
            await fleet.reload(cfg)
        [problem] = caught.value.problems
        assert problem.startswith("x.yaml:9: hosts.late.tls: cannot build the TLS context: ")
        assert [r.name for r in state.records()] == ["a", "b"]  # b was not removed first
    finally:
        await client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sighup_while_the_inventory_is_a_fifo_leaves_later_reloads_working(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    one, two = [await fake_engine(containers=2) for _ in range(2)]
    port = _free_port()
    cfg = tmp_path / "fleetd.yaml"
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(f"hosts:\n  - {{name: one, url: '{one.url}'}}\n")
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\npoll: {{interval: 2s, timeout: 1s}}\n"
        f"snapshots: {{path: {tmp_path / 'fleetd.db'}}}\ninventory: hosts.yaml\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetd", "run", "--config", str(cfg),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def names() -> list[str]:
                try:
                    async with http.get(f"{base}/hosts") as resp:
                        return [h["name"] for h in (await resp.json())["hosts"]] if resp.status == 200 else []
                except aiohttp.ClientConnectionError:
                    return []

            deadline = time.monotonic() + 20
            while await names() != ["one"]:
                assert time.monotonic() < deadline, "fleetd did not start"
                await asyncio.sleep(0.1)
            inventory.unlink()
            os.mkfifo(inventory)
            for _ in range(8):
                proc.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)
            assert await names() == ["one"]
            inventory.unlink()
            inventory.write_text(
                f"hosts:\n  - {{name: one, url: '{one.url}'}}\n  - {{name: two, url: '{two.url}'}}\n"
            )
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while await names() != ["one", "two"]:
                assert time.monotonic() < deadline, "the good reload after the FIFO never applied"
                await asyncio.sleep(0.1)
            async with http.get(f"{base}/snapshots/latest") as resp:  # the thread pool is not exhausted
                assert resp.status in (200, 404), await resp.text()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _out, err = await asyncio.wait_for(proc.communicate(), 20)
        except TimeoutError:
            proc.kill()  # a hung fleetd must not outlive the test
            await proc.wait()
            raise
    text = err.decode()
    assert "Traceback" not in text and "never retrieved" not in text, text[-3000:]
    assert text.count("reload rejected") == 8
    assert "a named pipe (FIFO), not a regular file" in text


async def test_a_reload_forgets_the_tls_contexts_of_hosts_that_left(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    a = await fake_engine(containers=1)
    pem().write(tmp_path / "tls")
    cfg = tmp_path / "fleetd.yaml"
    secure = (
        "{name: s, url: 'tcp://127.0.0.1:9', tls: {ca: tls/ca.pem, cert: tls/cert.pem, key: tls/key.pem}}"
    )
    write(cfg, [f"{{name: a, url: '{a.url}'}}", secure])
    async with Fleet(load_config(cfg)) as fleet:
        await eventually(lambda: any(r.name == "s" and r.last_error for r in fleet.state.records()))
        assert len(fleet.connections._ssl) == 1  # the key and certificates of host s, in memory
        write(cfg, [f"{{name: a, url: '{a.url}'}}"])
        await fleet.reload(cfg)
        assert [r.name for r in fleet.state.records()] == ["a"]
        assert fleet.connections._ssl == {}
