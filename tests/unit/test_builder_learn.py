"""An event refresh read raw teaches the host's poll builder the rows it wrote, and the host stays
agreed: the next list finds those rows known, and an agreed host's changed list is applied as listed
unless a newer observation wrote a row (fleet/builder.py learn, FleetState.agree, RowClock.newest)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import msgspec
import pytest

from fleetd.config.model import HostSettings
from fleetd.dockerapi import ContainerSummary, DockerClient, SystemInfo
from fleetd.fleet import state as state_module
from fleetd.fleet.builder import ContainerRecords
from fleetd.fleet.changes import Change, ChangeBatch, ContainerChanged
from fleetd.fleet.poller import Poller
from fleetd.fleet.records import ContainerRecord, EngineFacts, container_record
from fleetd.fleet.state import FleetState, PollSuccess
from fleetd.fleet.watch_events import Cause
from fleetd.fleet.watch_flush import RefreshSide
from fleetd.fleet.watch_rows import RowClock
from fleetd.fleet.watch_target import StateTarget
from tests.fakes import docker_20_10
from tests.fakes.model import EngineState, FakeContainer

NOW = 1_800_000_000.0
FACTS = EngineFacts.from_info(SystemInfo(ID="e"), "1.41")


def fleet(n: int = 3) -> list[FakeContainer]:
    """dockerd-like containers: metrics-api-0 (running), shop-proxy-1 (healthy), blog-web-2 (exited), shop-api-3."""
    return list(EngineState.generate(docker_20_10(containers=n, seed=5), now=NOW).containers.values())


def el(c: FakeContainer, now: float = NOW) -> bytes:
    """The container's element of ``GET /containers/json``, as dockerd writes it."""
    return msgspec.json.encode(c.summary(now, False))


def body(*elements: bytes) -> bytes:
    return b"[" + b",".join(elements) + b"]"


def rec(element: bytes) -> ContainerRecord:
    return container_record("h", msgspec.json.decode(element, type=ContainerSummary), "refresh")


def bare(rows: tuple[ContainerRecord, ...]) -> list[ContainerRecord]:
    return [msgspec.structs.replace(r, observed_at=None) for r in rows]


def die(c: FakeContainer) -> None:
    c.state, c.exit_code, c.finished_at = "exited", 137, NOW - 1


class Decode(list[object]):
    """A builder's ``decode`` that keeps the types it was asked for; ``elements``: single containers."""

    def __call__(self, data: bytes, type_: type[Any]) -> Any:
        self.append(type_)
        return msgspec.json.decode(data, type=type_)

    @property
    def elements(self) -> int:
        return self.count(ContainerSummary)


class Host:
    """One watched host written as its HostLoop does (build_body, then poll_done) and as a raw event
    refresh does (RefreshSide._decode_rows, then StateTarget.apply_rows); this is also the poller."""

    def __init__(self) -> None:
        self.state = FleetState()
        self.state.add(HostSettings(name="h", url="tcp://127.0.0.1:1"))
        self.state.watch("h")
        self.drift: list[tuple[str, ...]] = []
        self.state.drift_judge = lambda host, ids, sent_at: self.drift.append(ids)
        self.builder = ContainerRecords()
        self.decode = Decode()
        self.target = StateTarget(self.state, cast(Poller, self))
        self.side = RefreshSide()
        self.side.client = DockerClient("tcp://127.0.0.1:1", api_version="1.41")
        self.sub = self.state.changes.subscribe()

    def learn(self, host: str, rows: Mapping[str, tuple[int, ContainerRecord] | None]) -> tuple[ContainerRecord, ...]:
        return self.builder.learn(rows)  # Poller.learn: the host loop's builder

    def poll(self, answer: bytes, stamp: int | None = None) -> tuple[ContainerRecord, ...]:
        stamp = self.state.next_stamp("h") if stamp is None else stamp
        records, diff = self.builder.build_body("h", answer, f"poll-{stamp}", self.decode)
        self.state.poll_done("h", 0.01, PollSuccess(1.0, FACTS, msgspec.Raw(b"{}"), records, diff, stamp=stamp))
        return records

    def refresh(self, cid: str, answer: bytes, action: str = "die", *, raw: bool = True) -> None:
        rows, keys = self.side._decode_rows(answer)
        assert rows is not None
        stamp = self.state.next_stamp("h")
        self.target.apply_rows("h", frozenset([cid]), rows, stamp, {cid: Cause(action)}, keys if raw else None)

    def rows(self) -> tuple[ContainerRecord, ...]:
        record = self.state.get("h")
        assert record is not None
        return record.containers

    def row(self, cid: str) -> ContainerRecord:
        return next(r for r in self.rows() if r.id == cid)

    def agreed(self) -> bool:
        return self.state._agreed.get("h") is self.rows()

    def changes(self) -> list[Change]:
        out: list[Change] = []
        while (item := self.sub.get_nowait()) is not None:
            assert isinstance(item, ChangeBatch)
            out += item.changes
        return out

    def changed(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(c.container.id, c.fields) for c in self.changes() if isinstance(c, ContainerChanged)]

    def settle(self, paths: list[str] | None = None) -> None:
        """Forget what happened so far (the first poll's drift and changes, decodes, paths taken)."""
        self.changes()
        self.drift.clear()
        self.decode.clear()
        if paths is not None:
            paths.clear()


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which way each watched poll went: RowClock's confirm, reset (agreed) or merge_full, and whether
    the state compared the rows in full (diff_containers) rather than take the builder's diff."""
    calls: list[str] = []
    spied: tuple[tuple[object, str], ...] = (
        (RowClock, "merge_full"), (RowClock, "confirm"), (RowClock, "reset"), (state_module, "diff_containers")
    )
    for owner, name in spied:
        original = getattr(owner, name)

        def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(owner, name, spy)
    return calls


def test_learnt_rows_are_the_next_list_s_records_without_a_decode() -> None:
    cs = fleet(4)
    a, b, c, d = cs
    builder = ContainerRecords()
    first, _ = builder.build_body("h", body(el(a), el(b), el(c)), "t1")
    die(a)
    a2, d_el = el(a), el(d)
    ra, rd = rec(a2), rec(d_el)
    learnt = builder.learn({a.id: (hash(a2), ra), d.id: (hash(d_el), rd), c.id: None})
    rb = next(r for r in first if r.id == b.id)
    expected = sorted((ra, rb, rd), key=lambda r: r.name)
    assert len(learnt) == 3 and all(x is y for x, y in zip(learnt, expected, strict=True))  # by name, as given
    decode = Decode()
    records, diff = builder.build_body("h", body(d_el, el(b), a2), "t2", decode)  # another order too
    assert decode.elements == 0 and not diff
    assert bare(records) == bare(learnt) and {r.observed_at for r in records} == {"t2"}
    # an element it does not know (b stopped) is decoded, alone, and reported
    die(b)
    records, diff = builder.build_body("h", body(a2, el(b), d_el), "t3", decode)
    assert decode.elements == 1 and not diff.added and not diff.removed
    assert [(r.id, "state" in f) for r, f in diff.changed] == [(b.id, True)]
    others = tuple(r for r in records if r.id != b.id)
    assert bare(others) == bare(tuple(sorted((ra, rd), key=lambda r: r.name)))


def test_learning_forgets_the_whole_answer_it_was_built_from() -> None:
    """The last answer byte for byte is no longer what the records say: it is compared element by element."""
    a, b = fleet(2)
    builder = ContainerRecords()
    old = body(el(a), el(b))
    builder.build_body("h", old, "t1")
    die(a)
    builder.learn({a.id: (hash(el(a)), rec(el(a)))})
    assert not builder.same_answer(old)
    decode = Decode()
    records, diff = builder.build_body("h", old, "t2", decode)
    assert decode.elements == 1 and [(r.id, r.state) for r, _ in diff.changed] == [(a.id, "running")]
    assert {r.id: r.state for r in records}[a.id] == "running"


def test_the_same_elements_in_another_order_are_the_last_records_and_no_diff() -> None:
    cs = fleet(3)
    builder = ContainerRecords()
    first, _ = builder.build_body("h", body(*[el(c) for c in cs]), "t1")
    decode = Decode()
    again, diff = builder.build_body("h", body(*[el(c) for c in reversed(cs)]), "t2", decode)
    assert decode.elements == 0 and not diff
    assert [r.id for r in again] == [r.id for r in first] and bare(again) == bare(first)
    assert {r.observed_at for r in again} == {"t2"}


def test_refresh_rows_returns_the_rows_it_decided() -> None:
    h = Host()
    a, b, c = fleet(3)
    h.poll(body(el(a), el(b), el(c)))
    stale = h.state.next_stamp("h")
    die(a)
    newer = h.state.next_stamp("h")
    h.state.refresh_rows("h", [b.id], [], newer)  # b destroyed, told by a newer refresh
    decided = h.state.refresh_rows("h", [a.id, b.id, c.id], [rec(el(a))], stale)
    assert [cid for cid, _ in decided] == [a.id, c.id]  # b: a newer observation decided it
    assert decided[0][1] is h.row(a.id) and decided[0][1].state == "exited"
    assert decided[1][1] is None and c.id not in {r.id for r in h.rows()}


def test_a_refresh_the_builder_learnt_keeps_the_host_agreed(paths: list[str]) -> None:
    h = Host()
    a, *_ = cs = fleet(3)  # a: metrics-api-0, running
    h.poll(body(*[el(c) for c in cs]))
    die(a)
    h.refresh(a.id, body(el(a)))
    assert h.agreed() and h.row(a.id).state == "exited"
    h.settle(paths)
    listed = h.poll(body(*[el(c) for c in cs]))  # the daemon's list says what the refresh did
    assert paths == ["confirm"] and h.decode.elements == 0
    assert h.rows() is listed and h.row(a.id).state == "exited"
    assert h.changes() == [] and h.drift == []


@pytest.mark.parametrize("told", ["stale", "copies"])
def test_rows_that_are_not_the_host_s_objects_do_not_agree(paths: list[str], told: str) -> None:
    """``stale``: the builder's records from before the refresh; ``copies``: the host's rows, equal
    but other objects. Either way the next poll merges in full and finds what contradicts the rows."""
    h = Host()
    a, *_ = cs = fleet(3)
    before = [el(c) for c in cs]
    first = h.poll(body(*before))
    die(a)
    h.refresh(a.id, body(el(a)), raw=False)  # the builder is not taught
    rows = first if told == "stale" else tuple(msgspec.structs.replace(r) for r in h.rows())
    h.state.agree("h", rows)
    assert not h.agreed()
    h.settle(paths)
    listed = h.poll(body(*before))  # a newer list: a runs (the builder finds nothing new)
    assert paths == ["merge_full", "diff_containers"] and h.drift == [(a.id,)]
    assert [(cid, "state" in fields) for cid, fields in h.changed()] == [(a.id, True)]
    assert h.row(a.id).state == "running" and h.rows() is listed


def test_an_agreed_host_s_changed_list_is_applied_as_listed(paths: list[str]) -> None:
    h = Host()
    a, *_ = cs = fleet(3)
    h.poll(body(*[el(c) for c in cs]))
    assert h.agreed()  # a poll's list as it is
    h.settle(paths)
    die(a)  # no event told it
    listed = h.poll(body(*[el(c) for c in cs]))
    assert paths == ["reset"] and h.drift == [(a.id,)] and h.decode.elements == 1
    assert [(cid, "state" in fields) for cid, fields in h.changed()] == [(a.id, True)]
    assert h.rows() is listed and h.row(a.id).state == "exited" and h.agreed()


def test_an_agreed_host_s_list_that_only_tells_time_is_no_drift(paths: list[str]) -> None:
    h = Host()
    a, *_ = cs = fleet(3)
    a.started_at = NOW - 3
    h.poll(body(*[el(c) for c in cs]))
    assert h.row(a.id).status == "Up 3 seconds"
    h.settle(paths)
    h.poll(body(*[el(c, NOW + 1) if c is a else el(c) for c in cs]))
    assert paths == ["reset"] and h.drift == []
    assert h.row(a.id).status == "Up 4 seconds"
    assert h.changed() == [(a.id, ("status",))]


def overrule(event: str, paths: list[str]) -> tuple[Host, list[bytes], dict[str, str]]:
    """A poll is sent, then a container dies (or is removed) and its raw refresh lands first, which
    keeps the host agreed; the slow poll's answer, from before the event, lands last. Returns the
    host, the daemon's list after the event, and the rows' states as the refresh left them."""
    h = Host()
    a, *_ = cs = fleet(3)
    before = [el(c) for c in cs]
    h.poll(body(*before))
    slow = h.state.next_stamp("h")
    if event == "die":
        die(a)
    h.refresh(a.id, body(el(a)) if event == "die" else body(), event)
    assert h.agreed() and (a.id in {r.id for r in h.rows()}) == (event == "die")
    want = {r.id: r.state for r in h.rows()}
    h.settle(paths)
    h.poll(body(*before), stamp=slow)
    return h, [el(c) for c in cs if event == "die" or c is not a], want


@pytest.mark.parametrize("event", ["die", "destroy"])
def test_a_slow_poll_does_not_undo_a_newer_refresh_of_an_agreed_host(paths: list[str], event: str) -> None:
    h, after, want = overrule(event, paths)
    assert paths == ["merge_full", "diff_containers"]  # newest(): not the agreed path
    assert {r.id: r.state for r in h.rows()} == want and h.changes() == [] and h.drift == []
    h.poll(body(*after))  # a newer list agrees with the refresh
    assert {r.id: r.state for r in h.rows()} == want and h.drift == []


@pytest.mark.parametrize("event", ["die", "destroy"])
def test_a_list_after_an_overruled_slow_poll_announces_nothing_again(paths: list[str], event: str) -> None:
    """The slow poll's merge kept rows its list contradicts, so the builder's records (that list) are
    not the host's rows: the next list's builder diff is against them, and must not be announced."""
    h, after, _ = overrule(event, paths)
    h.settle()
    h.poll(body(*after))
    assert h.changes() == []  # a's ContainerChanged (die) or ContainerRemoved (destroy) was announced once


def test_an_agreed_host_s_list_naming_a_container_twice_keeps_one_row() -> None:
    """A hostile daemon's duplicate is sorted out by merge_full, also for an agreed host."""
    h = Host()
    cs = fleet(2)
    h.poll(body(*[el(c) for c in cs]))
    ids = [r.id for r in h.rows()]
    h.settle()
    h.poll(body(*[el(c) for c in cs], el(cs[0])))
    assert ([r.id for r in h.rows()], h.changes()) == (ids, [])  # not a row twice, no ContainerAdded


@pytest.mark.parametrize("seed", range(40))
def test_learning_in_place_gives_what_the_rebuild_gives(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh of known containers under their names takes their places (no rebuild, no sort);
    anything else (a new row, a removal, a rename, a container held twice) is rebuilt. Either way
    the records and keys are those of the rebuild."""
    import random

    rng = random.Random(seed)
    cs = fleet(8)
    elements = [el(c) for c in cs]
    if seed % 5 == 0:
        elements.append(elements[0])  # a daemon that lists a container twice
    fast, slow = ContainerRecords(), ContainerRecords()
    fast.build_body("h", body(*elements), "t1")
    slow.build_body("h", body(*elements), "t1")
    rows: dict[str, tuple[int, ContainerRecord] | None] = {}
    for c in rng.sample(cs, rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.15:
            rows[c.id] = None
            continue
        if roll < 0.3:
            c.name = c.name + "-renamed"
        else:
            die(c)
        e = el(c)
        rows[c.id] = (hash(e), rec(e))
    if rng.random() < 0.15:
        extra = fleet(9)[8]
        rows[extra.id] = (hash(el(extra)), rec(el(extra)))
    calls: list[bool] = []
    original = ContainerRecords._learn_in_place

    def counted(self: ContainerRecords, r: Mapping[str, tuple[int, ContainerRecord] | None]) -> bool:
        calls.append(took := original(self, r))
        return took

    monkeypatch.setattr(ContainerRecords, "_learn_in_place", counted)
    got = fast.learn(rows)
    monkeypatch.setattr(ContainerRecords, "_learn_in_place", lambda self, r: False)
    want = slow.learn(rows)
    assert [r.id for r in got] == [r.id for r in want]
    assert all(a is b for a, b in zip(got, want, strict=True)) or bare(got) == bare(want)
    assert list(fast._keys) == list(slow._keys)
    in_place_expected = (
        seed % 5 != 0
        and all(v is not None for v in rows.values())
        and all(any(c.id == cid and not c.name.endswith("-renamed") for c in cs) for cid in rows)
    )
    assert calls == [in_place_expected]


def test_an_agreed_host_s_list_that_tells_no_health_keeps_the_health_it_knew(paths: list[str]) -> None:
    """podman 4.3 lists a health-checked container without its health: the agreed path does not take
    that list as the rows (keep_health would change a row), the general merge keeps the health."""
    h = Host()
    cs = fleet(3)
    b = next(c for c in cs if c.health == "healthy")
    h.poll(body(*[el(c) for c in cs]))
    assert h.agreed() and h.row(b.id).health == "healthy"
    h.settle(paths)
    b.health = None  # the next list says nothing of its health
    h.poll(body(*[el(c) for c in cs]))
    assert paths == ["merge_full", "diff_containers"] and h.drift == []
    assert h.row(b.id).health == "healthy" and h.row(b.id).status.startswith("Up")
    assert not h.agreed()
