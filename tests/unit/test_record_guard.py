"""Host records change only through FleetState's writer: in the tests' process a write around it fails
(tests/conftest.py installs tests/writes.py's guard), so no test can build a fleet fleetd never would."""

from __future__ import annotations

import pytest

from fleetd.config.model import HostSettings
from fleetd.fleet.records import HostRecord, HostStatus
from fleetd.fleet.state import FleetState
from tests.unit.snapshotkit import NOW, Clock, container, facts
from tests.writes import WriteAroundTheWriter, poll_failed, poll_ok


def test_a_field_written_around_the_writer_fails() -> None:
    state = FleetState(clock=Clock())
    record = state.add(HostSettings(name="a", url="tcp://127.0.0.1:1"))
    rows = (container("a", "web-1"),)
    for field, value in (
        ("containers", rows),
        ("facts", facts(1)),
        ("status", HostStatus.UP),
        ("last_seen", NOW),
        ("first_poll_done", True),
        ("findings", ()),
    ):
        with pytest.raises(WriteAroundTheWriter, match=f"HostRecord.{field} of 'a' written around"):
            setattr(record, field, value)
    assert (record.containers, record.facts, record.status, record.last_seen) == ((), None, HostStatus.UNKNOWN, None)
    with pytest.raises(WriteAroundTheWriter):
        HostRecord(settings=HostSettings(name="b", url="tcp://127.0.0.1:2"))  # only FleetState.add makes them


def test_the_writer_and_the_readers_caches_still_write() -> None:
    state = FleetState(clock=Clock())
    state.add(HostSettings(name="a", url="tcp://127.0.0.1:1"))
    record = poll_ok(state, "a", (container("a", "web-1"), container("a", "db-1", state="exited")), facts=facts(1))
    assert (record.status, record.last_seen, record.running) == (HostStatus.UP, NOW, 1)  # running: a cached tally
    state.set_host_status("a", HostStatus.DOWN, "stream ended")
    poll_failed(state, "a", "connection refused")
    assert (record.status, record.last_error, len(record.containers)) == (HostStatus.DOWN, "connection refused", 2)
