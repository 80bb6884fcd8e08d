"""Diffs between snapshots, and the table `fleetd diff` prints."""

from __future__ import annotations

import dataclasses
import re

import msgspec

from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.snapshot.diff import Change, diff_snapshots
from fleetd.snapshot.model import Snapshot, Trigger, build_snapshot, capture_fleet
from fleetd.snapshot.table import format_diff
from tests.unit.snapshotkit import NOW, Clock, add_host, container, facts, repoll
from tests.writes import poll_failed, poll_ok


def snap(state: FleetState, sid: int) -> Snapshot:
    return build_snapshot(capture_fleet(state, Trigger.SCHEDULE), snapshot_id=sid)


def two_host_fleet(clock: Clock) -> FleetState:
    state = FleetState(clock=clock)
    add_host(state, "a", [container("a", "web-1"), container("a", "db-1"), container("a", "job-1")], index=1)
    add_host(state, "b", [container("b", "web-2")], index=2)
    return state


def test_nothing_changed_but_the_volatile_fields() -> None:
    clock = Clock()
    state = two_host_fleet(clock)
    old = snap(state, 1)
    clock.now = NOW + 600
    repoll(state, now=clock.now, status_suffix=" (healthy)")  # status text, observed_at, last_seen
    poll_failed(state, "a", "a transient error that is not a change", at=clock.now)
    state.set_host_status("a", HostStatus.UP)  # its event stream came back: up, the error kept
    a = state.get("a")
    assert a is not None and a.status is HostStatus.UP and a.last_error is not None
    diff = diff_snapshots(old, snap(state, 2))
    assert diff.empty
    assert "no changes" in format_diff(diff)


def test_hosts_added_removed_and_changed() -> None:
    clock = Clock()
    state = two_host_fleet(clock)
    old = snap(state, 1)
    state.remove("b")
    add_host(state, "c", [container("c", "x-1")], index=3)
    a = state.get("a")
    assert a is not None
    state.update_settings("a", dataclasses.replace(a.settings, labels={"rack": "r9", "env": "prod"}))
    poll_ok(state, "a", a.containers, facts=facts(1, server_version="28.0.0"))
    poll_failed(state, "a")
    diff = diff_snapshots(old, snap(state, 2))
    assert [(h.name, h.state, h.containers) for h in diff.hosts_added] == [("c", "up", 1)]
    assert [h.name for h in diff.hosts_removed] == ["b"]
    assert [(h.name, list(h.changes)) for h in diff.hosts_changed] == [
        (
            "a",
            [
                Change("state", "up", "down"),
                Change("labels.env", None, "prod"),
                Change("labels.rack", "r1", "r9"),
                Change("engine.server_version", "27.5.1", "28.0.0"),
            ],
        )
    ]
    assert diff.containers == ()  # a host that went down keeps its last known containers


def test_containers_added_removed_and_changed_per_host() -> None:
    clock = Clock()
    state = two_host_fleet(clock)
    old = snap(state, 1)
    a = state.get("a")
    assert a is not None
    web, db, job = a.containers
    rows = (
        msgspec.structs.replace(web, state="exited", status="Exited (0) 1 second ago", ports=[]),
        msgspec.structs.replace(job, labels={"app": "job", "tier": "batch"}, health="healthy"),
        container("a", "new-1", image="redis:7.4"),
    )
    poll_ok(state, "a", rows, facts=a.facts)
    diff = diff_snapshots(old, snap(state, 2))
    assert not diff.hosts_changed and not diff.hosts_added and not diff.hosts_removed
    (host,) = diff.containers
    assert host.host == "a"
    assert [(c.name, c.image, c.state) for c in host.added] == [("new-1", "redis:7.4", "running")]
    assert [(c.name, c.id) for c in host.removed] == [("db-1", db.id)]
    changes = {c.name: {ch.field: (ch.old, ch.new) for ch in c.changes} for c in host.changed}
    assert changes["web-1"] == {"state": ("running", "exited"), "ports": (web.ports, [])}
    assert changes["job-1"] == {"health": ("none", "healthy"), "labels.tier": (None, "batch")}

    table = format_diff(diff)
    assert table.splitlines()[0].startswith("snapshot 1 (2025-11-30T10:00:00Z) → 2 (")
    lines = table.splitlines()[1:]
    assert lines[0].split() == ["HOST", "CONTAINER", "CHANGE", "FIELD", "OLD", "NEW"]
    rows = [line.split() for line in lines[1:]]
    assert ["a", "new-1", "added", "redis:7.4", "running"] in rows
    assert ["a", "db-1", "removed", "nginx:1.27", "running"] in rows
    assert ["a", "web-1", "changed", "state", "running", "exited"] in rows
    assert ["a", "job-1", "changed", "labels.tier", "-", "batch"] in rows


def test_a_recreated_container_is_a_change_of_id_not_a_removal() -> None:
    clock = Clock()
    state = two_host_fleet(clock)
    old = snap(state, 1)
    b = state.get("b")
    assert b is not None
    (web,) = b.containers
    recreated = msgspec.structs.replace(
        web, id="f" * 64, image="nginx:1.28", image_id="sha256:" + "cd" * 32, created="2025-11-30T09:59:00Z"
    )
    poll_ok(state, "b", (recreated,), facts=b.facts)
    diff = diff_snapshots(old, snap(state, 2))
    (host,) = diff.containers
    assert not host.added and not host.removed
    (changed,) = host.changed
    assert [ch.field for ch in changed.changes] == ["id", "image", "image_id"]
    rows = format_diff(diff)
    assert "sha256:abababababab " in rows and "sha256:cdcdcdcdcdcd" in rows  # long ids shortened
    assert re.search(r"\bf{12}\b", rows) and "f" * 13 not in rows


def test_the_diff_encodes_to_json_with_old_and_new_values() -> None:
    clock = Clock()
    state = two_host_fleet(clock)
    old = snap(state, 1)
    state.remove("b")
    data = msgspec.json.decode(msgspec.json.encode(diff_snapshots(old, snap(state, 2))))
    assert data["old"] == {"id": 1, "taken_at": "2025-11-30T10:00:00Z"}
    assert data["hosts_removed"] == [{"name": "b", "url": "tcp://127.0.0.3:2377", "state": "up", "containers": 1}]
    assert data["hosts_changed"] == [] and data["containers"] == []
