"""Reload: added hosts start, removed hosts leave, changed hosts reconnect, unchanged hosts keep state."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fleetd.config import load_config
from fleetd.config.live import ReloadFailed
from fleetd.fleet.records import HostStatus
from fleetd.runtime import Fleet
from tests.fakes import FakeEngines
from tests.harness import FleetClient, eventually


def write(cfg: Path, hosts: dict[str, str], *, interval: str = "1s", extra: str = "") -> None:
    lines = [
        "listen: 127.0.0.1:8080",
        f"poll: {{interval: {interval}, timeout: 500ms}}",
        "snapshots: {enabled: false}",
        "hosts:",
    ]
    lines += [f"  - {{name: {n}, url: '{u}'}}" for n, u in hosts.items()]
    cfg.write_text("\n".join(lines) + "\n" + extra)


async def test_reload_applies_inventory_changes_without_a_gap(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    keep, drop, move_from, move_to, new = [await fake_engine(containers=2) for _ in range(5)]
    cfg = tmp_path / "fleetd.yaml"
    write(cfg, {"keep": keep.url, "drop": drop.url, "moved": move_from.url}, interval="30s")
    fleet = Fleet(load_config(cfg))
    client = FleetClient(fleet)
    await client.start_server()
    try:
        state = fleet.state
        await eventually(lambda: state.is_ready())
        kept = state.get("keep")
        assert kept is not None and kept.status is HostStatus.UP
        # Images are listed right after the first poll (queued behind the other hosts' first polls).
        await eventually(lambda: kept.images is not None)
        await eventually(lambda: any("/events" in p for _, p in keep.requests))  # its watcher is connected

        def polls_and_streams() -> int:  # not the watcher's liveness pings or refreshes
            return sum(1 for _, p in keep.requests if "/info" in p or "/events" in p)

        seen, polls, requests = kept.last_seen, kept.polls, polls_and_streams()

        write(cfg, {"keep": keep.url, "moved": move_to.url, "added": new.url}, interval="30s")
        report = await fleet.reload(cfg)
        assert report.added == ("added",) and report.removed == ("drop",)
        assert report.reconnected == ("moved",) and report.unchanged == ("keep",)

        await eventually(lambda: (r := state.get("added")) is not None and r.status is HostStatus.UP)
        await eventually(lambda: len(move_to.requests) > 0)
        assert state.get("drop") is None
        hosts = [h["name"] for h in (await (await client.get("/api/v1/hosts")).json())["hosts"]]
        assert hosts == ["keep", "moved", "added"]
        # The unchanged host kept its record, its data and its schedule: no reset, no extra poll.
        assert state.get("keep") is kept
        assert kept.last_seen == seen and kept.polls == polls and polls_and_streams() == requests
        assert (await client.get("/readyz")).status == 200
        drop_requests = len(drop.requests)
        await asyncio.sleep(0.2)
        assert len(drop.requests) == drop_requests  # the removed host is no longer polled
    finally:
        await client.close()


async def test_invalid_new_config_is_rejected_and_the_old_one_keeps_running(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=1)
    cfg = tmp_path / "fleetd.yaml"
    write(cfg, {"one": eng.url})
    fleet = Fleet(load_config(cfg))
    client = FleetClient(fleet)
    await client.start_server()
    try:
        await eventually(lambda: fleet.state.is_ready())
        cfg.write_text("hosts:\n  - name: one\n    url: ftp://nowhere\n")
        with pytest.raises(ReloadFailed) as info:
            await fleet.reload(cfg)
        assert f"{cfg}:3: hosts[0].url" in info.value.problems[0]
        assert fleet.config.last_reload_ok is False
        record = fleet.state.get("one")
        assert record is not None and record.settings.url == eng.url
        metrics = await (await client.get("/metrics")).text()
        assert "fleetd_config_last_reload_successful 0.0" in metrics
        write(cfg, {"one": eng.url})
        await fleet.reload(cfg)
        assert fleet.config.last_reload_ok is True
    finally:
        await client.close()


async def test_listen_address_cannot_change_on_reload(tmp_path: Path, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1)
    cfg = tmp_path / "fleetd.yaml"
    write(cfg, {"one": eng.url})
    fleet = Fleet(load_config(cfg))
    client = FleetClient(fleet)
    await client.start_server()
    try:
        cfg.write_text(cfg.read_text().replace("127.0.0.1:8080", "127.0.0.1:9090"))
        await fleet.reload(cfg)
        assert fleet.config.current.listen_port == 8080
    finally:
        await client.close()


async def test_post_reload_needs_admin_and_reports_the_outcome(
    tmp_path: Path, fake_engine: FakeEngines
) -> None:
    import hashlib

    one, two = await fake_engine(containers=1), await fake_engine(containers=1)
    admin, viewer = "admin-token-" + "a" * 40, "viewer-token-" + "v" * 40
    auth = (
        "auth:\n  tokens:\n"
        f"    - {{name: ops, role: admin, token_sha256: {hashlib.sha256(admin.encode()).hexdigest()}}}\n"
        f"    - {{name: dash, role: viewer, token_sha256: {hashlib.sha256(viewer.encode()).hexdigest()}}}\n"
    )
    cfg = tmp_path / "fleetd.yaml"
    write(cfg, {"one": one.url}, extra=auth)
    fleet = Fleet(load_config(cfg))
    client = FleetClient(fleet)
    await client.start_server()
    try:
        write(cfg, {"one": one.url, "two": two.url}, extra=auth)
        denied = await client.post("/api/v1/reload", headers={"Authorization": f"Bearer {viewer}"})
        assert denied.status == 403
        assert fleet.state.get("two") is None
        assert (await client.post("/api/v1/reload")).status == 401

        ok = await client.post("/api/v1/reload", headers={"Authorization": f"Bearer {admin}"})
        assert ok.status == 200, await ok.text()
        assert (await ok.json())["added"] == ["two"]
        assert fleet.state.get("two") is not None

        cfg.write_text(cfg.read_text().replace("interval: 1s", "interval: banana"))
        bad = await client.post("/api/v1/reload", headers={"Authorization": f"Bearer {admin}"})
        assert bad.status == 400
        body = await bad.json()
        assert body["error"]["code"] == "invalid_config"
        assert any(f"{cfg}:2: poll.interval" in p for p in body["error"]["problems"])
        assert fleet.state.get("two") is not None  # nothing lost
    finally:
        await client.close()
