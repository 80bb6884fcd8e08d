"""The state's writer with an event watcher: stamped polls, targeted refreshes, causes on the changes."""

from __future__ import annotations

import msgspec

from fleetd.config.model import HostSettings
from fleetd.dockerapi import ContainerSummary, SystemInfo
from fleetd.fleet.changes import ContainerAdded, ContainerChanged, ContainerRemoved, HostResynced
from fleetd.fleet.records import ContainerDiff, ContainerRecord, EngineFacts, container_record
from fleetd.fleet.state import FleetState, PollSuccess
from fleetd.fleet.watch_events import Cause


def rec(cid: str, state: str) -> ContainerRecord:
    return container_record("h", ContainerSummary(Id=cid, Names=(f"/{cid}",), State=state), None)


def poll(state: FleetState, rows: tuple[ContainerRecord, ...], stamp: int, sent_at: float = 0.0) -> None:
    facts = EngineFacts.from_info(SystemInfo(ID="e"), "1.41")
    state.poll_done(
        "h",
        0.01,
        PollSuccess(1.0, facts, msgspec.Raw(b"{}"), rows, ContainerDiff(), stamp=stamp, sent_at=sent_at),
    )


def test_a_poll_sent_before_an_event_refresh_does_not_undo_it_and_changes_carry_the_cause() -> None:
    state = FleetState()
    state.add(HostSettings(name="h", url="tcp://127.0.0.1:1"))
    state.watch("h")
    drift: list[tuple[str, tuple[str, ...]]] = []
    state.drift_judge = lambda host, ids, sent_at: drift.append((host, ids))
    poll(state, (rec("a", "running"), rec("b", "running")), state.next_stamp("h"))
    with state.changes.subscribe() as sub:
        slow = state.next_stamp("h")  # a poll is sent ...
        refresh = state.next_stamp("h")  # ... then a's die is refreshed, answered first
        state.refresh_rows("h", ["a"], [rec("a", "exited")], refresh, {"a": Cause("die", 137)})
        state.refresh_rows("h", ["c"], [rec("c", "running")], state.next_stamp("h"), {"c": Cause("create")})
        state.refresh_rows("h", ["b"], [], state.next_stamp("h"), {"b": Cause("destroy")})
        poll(state, (rec("a", "running"), rec("b", "running")), slow)  # the slow poll lands last
        state.resynced("h", True)
        record = state.get("h")
        assert record is not None
        assert {c.id: c.state for c in record.containers} == {"a": "exited", "c": "running"}
        changes = []
        while (item := sub.get_nowait()) is not None:
            changes += list(item.changes)  # type: ignore[union-attr]
    kinds = [(type(c).__name__, getattr(c, "action", None)) for c in changes]
    assert kinds == [
        ("ContainerChanged", "die"),
        ("ContainerAdded", "create"),
        ("ContainerRemoved", "destroy"),
        ("HostResynced", None),
    ]
    changed = changes[0]
    assert isinstance(changed, ContainerChanged) and changed.exit_code == 137 and "state" in changed.fields
    assert isinstance(changes[1], ContainerAdded) and isinstance(changes[2], ContainerRemoved)
    assert isinstance(changes[3], HostResynced) and changes[3].gap is True
    # the first poll found rows it had not seen (the watcher discounts those); the slow one, nothing
    assert drift == [("h", ("a", "b"))]


def test_unwatched_hosts_take_polls_as_they_are() -> None:
    state = FleetState()
    state.add(HostSettings(name="h", url="tcp://127.0.0.1:1"))
    assert state.next_stamp("h") == 0
    poll(state, (rec("a", "running"),), 0)
    poll(state, (rec("a", "exited"),), 0)
    record = state.get("h")
    assert record is not None and [c.state for c in record.containers] == ["exited"]


def test_a_refresh_in_place_leaves_the_index_answering_the_rows_the_host_holds() -> None:
    """A refresh that keeps the host's ids and names (no re-sort, no re-placing in the index) and
    one that adds a row: the index's answers are the host's own records either way."""
    from fleetd.fleet.queries import ContainerQuery

    state = FleetState()
    state.add(HostSettings(name="h", url="tcp://127.0.0.1:1"))
    state.watch("h")
    poll(state, (rec("a", "running"), rec("b", "running"), rec("d", "running")), state.next_stamp("h"))
    record = state.get("h")
    assert record is not None
    for cid, after in (("b", "exited"), ("a", "exited"), ("b", "running")):
        state.refresh_rows("h", [cid], [rec(cid, after)], state.next_stamp("h"), {cid: Cause("die")})
        exited = state.containers(ContainerQuery(state="exited"))
        assert [c.id for c in exited] == [c.id for c in record.containers if c.state == "exited"]
        listed = [(c.id, c.state) for c in state.containers(ContainerQuery())]
        assert listed == [(c.id, c.state) for c in record.containers]  # the index's records are the host's
    state.refresh_rows("h", ["c"], [rec("c", "exited")], state.next_stamp("h"), {"c": Cause("create")})
    assert [c.id for c in state.containers(ContainerQuery())] == ["a", "b", "c", "d"]
    assert [c.id for c in state.containers(ContainerQuery(state="exited"))] == ["a", "c"]
