"""Building a snapshot from the fleet state: what it holds, what it leaves out, how it counts."""

from __future__ import annotations

import pytest

from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.snapshot.model import Trigger, build_snapshot, capture_fleet, strip_relative_time
from tests.unit.snapshotkit import NOW, Clock, add_host, container
from tests.writes import poll_failed, poll_ok


@pytest.mark.parametrize(
    ("status", "kept"),
    [
        ("Up 3 hours", "Up"),
        ("Up Less than a second", "Up"),
        ("Up About an hour (healthy)", "Up (healthy)"),
        ("Up 2 days (health: starting)", "Up (health: starting)"),
        ("Up 5 minutes (Paused)", "Up (Paused)"),
        ("Exited (137) 2 weeks ago", "Exited (137)"),
        ("Exited (0) About a minute ago", "Exited (0)"),
        ("Restarting (1) 5 seconds ago", "Restarting (1)"),
        ("Created", "Created"),
        ("Dead", "Dead"),
        ("Removal In Progress", "Removal In Progress"),
        ("Up 1 second", "Up"),
        ("Exited (2) 3 months ago", "Exited (2)"),
    ],
)
def test_the_relative_time_is_cut_from_the_status_text(status: str, kept: str) -> None:
    assert strip_relative_time(status) == kept


def test_a_snapshot_holds_every_host_with_its_facts_and_containers() -> None:
    clock = Clock()
    state = FleetState(clock=clock)
    add_host(
        state,
        "web",
        [
            container("web", "nginx-1", status="Up 2 hours (healthy)", health="healthy"),
            container("web", "job-1", state="exited", status="Exited (1) 3 days ago"),
        ],
        index=1,
        labels={"env": "prod"},
    )
    add_host(state, "gone", [container("gone", "db-1")], status=HostStatus.DOWN, index=2, last_error="refused")
    add_host(state, "empty", [], index=3)
    clock.now = NOW + 12.345
    snap = build_snapshot(capture_fleet(state, Trigger.ON_DEMAND, version="9.9.9"))
    assert snap.id is None
    assert (snap.taken_at, snap.trigger, snap.fleetd_version) == ("2025-11-30T10:00:12.345Z", "on-demand", "9.9.9")
    assert [h.name for h in snap.hosts] == ["empty", "gone", "web"]  # by name
    web = snap.hosts[2]
    assert web.url == "tcp://127.0.0.2:2376" and web.labels == {"env": "prod"}
    assert (web.state, web.stale, web.last_seen) == (HostStatus.UP, False, "2025-11-30T10:00:00Z")
    assert web.engine is not None and web.engine.engine_id == "ENGINE-0001" and web.engine.ncpu == 4
    assert [(c.name, c.state, c.status, c.health) for c in web.containers] == [
        ("nginx-1", "running", "Up (healthy)", "healthy"),
        ("job-1", "exited", "Exited (1)", "none"),
    ]
    gone = snap.hosts[1]
    assert (gone.state, gone.stale, gone.last_error) == (HostStatus.DOWN, True, "refused")
    assert len(gone.containers) == 1  # the last known, marked by the host being stale
    c = snap.counts
    assert (c.hosts, c.hosts_up, c.hosts_failed, c.hosts_stale, c.containers, c.running) == (3, 2, 1, 1, 3, 2)


def test_the_capture_is_a_point_in_time_copy() -> None:
    state = FleetState(clock=Clock())
    add_host(state, "a", [container("a", "x-1")])
    capture = capture_fleet(state, Trigger.SCHEDULE)
    # the poller moves on after the capture: the snapshot still shows the moment it was taken
    poll_ok(state, "a", ())
    poll_failed(state, "a")
    state.remove("a")
    snap = build_snapshot(capture)
    assert [(h.name, h.state, len(h.containers)) for h in snap.hosts] == [("a", HostStatus.UP, 1)]


def test_container_fields_that_only_repeat_the_host_are_left_out() -> None:
    state = FleetState(clock=Clock())
    add_host(state, "a", [container("a", "x-1")])
    snap = build_snapshot(capture_fleet(state, Trigger.SCHEDULE))
    fields = set(snap.hosts[0].containers[0].__struct_fields__)
    assert not fields & {"host", "observed_at", "stale"}
    assert {"id", "name", "image", "image_id", "state", "status", "health", "labels", "ports"} <= fields
