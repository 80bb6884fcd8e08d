"""The ordering guard: an observation applies only over rows written by older ones."""

from __future__ import annotations

from fleetd.dockerapi import ContainerSummary
from fleetd.dockerapi.events import EngineEvent, EventActor
from fleetd.fleet.records import ContainerRecord, container_record
from fleetd.fleet.watch_events import Effect, classify, merge_cause
from fleetd.fleet.watch_rows import RowClock


def rec(cid: str, state: str, name: str | None = None) -> ContainerRecord:
    return container_record("h", ContainerSummary(Id=cid, Names=(f"/{name or cid}",), State=state), None)


def test_slow_poll_never_undoes_a_newer_event_refresh() -> None:
    clock = RowClock()
    rows = clock.merge_full((), [rec("a", "running"), rec("b", "running")], clock.next_stamp()).records
    poll = clock.next_stamp()  # a slow poll is sent ...
    event = clock.next_stamp()  # ... then "a" dies and its refresh is sent and answered first
    rows = clock.merge_subset(rows, ["a"], [rec("a", "exited")], event).records
    rows = clock.merge_subset(rows, ["c"], [rec("c", "running")], clock.next_stamp()).records  # created
    merged = clock.merge_full(rows, [rec("a", "running"), rec("b", "running")], poll)
    states = {r.id: r.state for r in merged.records}
    assert states == {"a": "exited", "b": "running", "c": "running"}
    assert merged.drifted == ()  # nothing the poll saw contradicts rows it may decide


def test_removal_tombstone_beats_an_older_poll_and_a_newer_poll_confirms() -> None:
    clock = RowClock()
    rows = clock.merge_full((), [rec("a", "running")], clock.next_stamp()).records
    poll = clock.next_stamp()
    rows = clock.merge_subset(rows, ["a"], [], clock.next_stamp()).records  # destroy: gone
    assert rows == ()
    assert clock.merge_full(rows, [rec("a", "running")], poll).records == ()
    later = clock.merge_full((), [], clock.next_stamp())
    assert later.records == () and clock.stamp_of("a") == 0  # tombstone dropped


def test_poll_drift_lists_changed_added_and_vanished_rows() -> None:
    clock = RowClock()
    rows = clock.merge_full((), [rec("a", "running"), rec("b", "running")], clock.next_stamp()).records
    merged = clock.merge_full(rows, [rec("a", "exited"), rec("c", "running")], clock.next_stamp())
    assert sorted(merged.drifted) == ["a", "b", "c"]
    same = clock.merge_full(merged.records, [rec("a", "exited"), rec("c", "running")], clock.next_stamp())
    assert same.drifted == ()


def ev(action: str, **attrs: str) -> EngineEvent:
    return EngineEvent(
        Type="container", Action=action, Actor=EventActor(ID="x", Attributes=attrs), timeNano=1
    )


def test_classify_and_causes() -> None:
    assert classify(ev("exec_start: sh -c true"))[0] is Effect.NONE
    assert classify(ev("exec_died"))[0] is Effect.NONE  # podman
    assert classify(ev("health_status: healthy")) == (Effect.DIRTY, "x")
    assert classify(ev("destroy"))[0] is Effect.REMOVED and classify(ev("remove"))[0] is Effect.REMOVED
    assert classify(ev("something-new"))[0] is Effect.DIRTY  # unknown: refresh, never ignore
    net = EngineEvent(
        Type="network", Action="connect", Actor=EventActor(ID="n", Attributes={"container": "c"})
    )
    assert classify(net) == (Effect.DIRTY, "c")
    cause = None
    for action, attrs in (("kill", {"signal": "15"}), ("die", {"exitCode": "143"}), ("stop", {})):
        cause = merge_cause(cause, ev(action, **attrs))
    assert cause is not None and (cause.action, cause.exit_code) == ("die", 143)
    cause = merge_cause(cause, ev("start"))
    assert (cause.action, cause.exit_code) == ("start", None)
    assert merge_cause(merge_cause(None, ev("destroy")), ev("start")).action == "destroy"


def test_a_list_without_health_keeps_what_the_row_knew_of_a_running_container() -> None:
    """podman 4.3 lists no health; fleetd learns it from its health events (watch_podman)."""
    from fleetd.dockerapi.models import ContainerHealth

    def hrec(cid: str, state: str, health: str | None) -> ContainerRecord:
        h = ContainerHealth(health) if health else None
        return container_record(
            "h", ContainerSummary(Id=cid, Names=(f"/{cid}",), State=state, Health=h), None
        )

    clock = RowClock()
    rows = clock.merge_full(
        (), [hrec("a", "running", None), hrec("b", "running", None)], clock.next_stamp()
    ).records
    rows = clock.merge_subset(rows, ["a"], [hrec("a", "running", "unhealthy")], clock.next_stamp()).records
    merged = clock.merge_full(
        rows, [hrec("a", "running", None), hrec("b", "running", None)], clock.next_stamp()
    )
    assert {r.id: r.health for r in merged.records} == {"a": "unhealthy", "b": "none"}
    assert merged.drifted == ()  # a list that cannot tell health is no drift
    rows = clock.merge_subset(merged.records, ["a"], [hrec("a", "running", None)], clock.next_stamp()).records
    assert rows[0].health == "unhealthy"  # a targeted list (a start, a rename) keeps it too
    rows = clock.merge_subset(rows, ["a"], [hrec("a", "running", "healthy")], clock.next_stamp()).records
    assert rows[0].health == "healthy"  # a health that is told wins
    rows = clock.merge_subset(rows, ["a"], [hrec("a", "exited", None)], clock.next_stamp()).records
    assert rows[0].health == "none"  # a stopped container has no health, as dockerd lists it


def test_rows_that_differ_only_in_when_they_were_seen_are_neither_drift_nor_change() -> None:
    """Every poll rebuilds its records with a new ``observed_at``; compared without it (the fast
    path), they are equal, and a real difference is still found field by field."""
    import msgspec

    from fleetd.fleet.records import diff_containers

    clock = RowClock()
    old = clock.merge_full((), [rec("a", "running"), rec("b", "running")], clock.next_stamp()).records
    old = tuple(msgspec.structs.replace(r, status="Up 3 minutes") for r in old)
    seen = tuple(msgspec.structs.replace(r, observed_at="2026-12-03T10:00:00Z") for r in old)
    assert clock.merge_full(old, seen, clock.next_stamp()).drifted == ()
    assert not diff_containers(old, seen)
    later = (
        msgspec.structs.replace(seen[0], status="Up 4 minutes"),
        msgspec.structs.replace(seen[1], state="exited"),
    )
    assert clock.merge_full(seen, later, clock.next_stamp()).drifted == ("b",)  # "Up N" is only time
    diff = diff_containers(seen, later)
    assert [(c.id, f) for c, f in diff.changed] == [("a", ("status",)), ("b", ("state",))]


def test_the_merge_of_a_list_that_decides_every_row_is_the_general_merge() -> None:
    """merge_full's fast path (no row written by a newer observation) against the general one."""
    import random

    import msgspec

    rng = random.Random(7)
    for _ in range(300):
        ids = [f"c{i}" for i in range(8)]
        clock = RowClock()
        current = tuple(rec(i, rng.choice(["running", "exited"])) for i in ids if rng.random() < 0.7)
        for cid in rng.sample(ids, 3):  # older observations, some tombstones among them
            clock._stamps[cid] = clock.next_stamp()
        stamp = clock.next_stamp()
        fresh = [rec(i, rng.choice(["running", "exited"])) for i in ids if rng.random() < 0.7]
        fresh = [msgspec.structs.replace(r, observed_at="now") if rng.random() < 0.5 else r for r in fresh]
        if rng.random() < 0.1 and fresh:
            fresh.append(fresh[0])  # a hostile daemon lists a container twice
        other = RowClock()
        other._stamps = dict(clock._stamps)
        fast = clock.merge_full(current, fresh, stamp)
        slow = other._merge_some(current, fresh, stamp)
        assert fast == slow and clock._stamps == other._stamps


def _merge_subset_by_dict(
    clock: RowClock, current: tuple[ContainerRecord, ...], asked: list[str], fresh: list[ContainerRecord], stamp: int
) -> tuple[tuple[ContainerRecord, ...], tuple[str, ...]]:
    """merge_subset as it was before its in-place path: every row by id, then sorted by name."""
    from fleetd.fleet.watch_rows import keep_health

    out = {c.id: c for c in current}
    got = {r.id: r for r in fresh}
    applied = []
    for cid in asked:
        if clock._stamps.get(cid, 0) > stamp:
            continue
        clock._stamps[cid] = stamp
        applied.append(cid)
        row = got.get(cid)
        if row is not None:
            out[cid] = keep_health(out.get(cid), row)
        else:
            out.pop(cid, None)
    return tuple(sorted(out.values(), key=lambda c: c.name)), tuple(applied)


def test_a_refresh_in_place_is_the_refresh_by_dict() -> None:
    """merge_subset's in-place path (same ids and names: no sort) against the general merge, and
    its pairs are each applied row before and after."""
    import random

    rng = random.Random(11)
    places = 0
    for _ in range(400):
        ids = [f"c{i}" for i in range(8)]
        clock = RowClock()
        current = tuple(rec(i, rng.choice(["running", "exited"])) for i in ids if rng.random() < 0.8)
        for cid in rng.sample(ids, 2):
            clock._stamps[cid] = clock.next_stamp()
        stamp = clock.next_stamp()
        if rng.random() < 0.3:  # a newer observation wrote one row after this refresh was sent
            clock._stamps[rng.choice(ids)] = stamp + 1
        asked = rng.sample(ids, rng.randint(0, 3))
        fresh = [
            rec(i, rng.choice(["running", "exited"]), f"renamed-{i}" if rng.random() < 0.1 else None)
            for i in asked
            if rng.random() < 0.85
        ]
        other = RowClock()
        other._stamps = dict(clock._stamps)
        merged = clock.merge_subset(current, asked, fresh, stamp)
        assert (merged.records, merged.applied) == _merge_subset_by_dict(other, current, asked, fresh, stamp)
        assert clock._stamps == other._stamps
        before, after = {c.id: c for c in current}, {c.id: c for c in merged.records}
        assert merged.pairs == tuple((before.get(c), after.get(c)) for c in merged.applied)
        if merged.in_place:
            places += 1
            assert [c.id for c in merged.records] == [c.id for c in current]
    assert places > 50  # the in-place path was taken often enough to count
