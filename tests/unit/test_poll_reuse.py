"""What a poll skips when nothing changed: the builder's byte-identical answers, the watched state's merge."""

from __future__ import annotations

import msgspec
import pytest

from fleetd.config.model import HostSettings, PollSettings
from fleetd.dockerapi import ContainerSummary, EngineConnections, SystemInfo
from fleetd.fleet.builder import ContainerRecords
from fleetd.fleet.poller import Poller
from fleetd.fleet.records import ContainerDiff, ContainerRecord, EngineFacts, HostStatus, container_record
from fleetd.fleet.state import FleetState, PollSuccess
from fleetd.service.runner import LoopChoiceError, event_loop_factory
from tests.fakes import FakeEngines
from tests.fakes.behaviour import Fault
from tests.harness import eventually


def _summary(cid: str, name: str, state: str = "running", status: str = "Up 2 hours") -> dict[str, object]:
    return {"Id": cid * 64, "Names": [f"/{name}"], "Image": "nginx:1.27", "State": state, "Status": status,
            "Labels": {"app": name}, "Ports": [{"PrivatePort": 80, "Type": "tcp"}]}  # fmt: skip


def _body(*items: dict[str, object]) -> bytes:
    return msgspec.json.encode(list(items))


def test_an_identical_answer_is_not_decoded_and_reuses_every_record() -> None:
    builder = ContainerRecords()
    body = _body(_summary("a", "web"), _summary("b", "db"))
    calls: list[object] = []

    def decode(data: bytes, type_: type[object]) -> object:
        calls.append(type_)
        return msgspec.json.decode(data, type=type_)

    first, diff = builder.build_body("h", body, "2026-12-03T10:00:00Z", decode)
    assert [r.name for r in first] == ["db", "web"] and sorted(r.name for r in diff.added) == ["db", "web"]
    calls.clear()
    second, diff = builder.build_body("h", bytes(body), "2026-12-03T10:00:15Z", decode)
    assert calls == [] and not diff  # the same bytes: nothing decoded, nothing changed
    assert [r.observed_at for r in second] == ["2026-12-03T10:00:15Z"] * 2
    assert [msgspec.structs.replace(r, observed_at=None) for r in second] == [
        msgspec.structs.replace(r, observed_at=None) for r in first
    ]


def test_a_changed_answer_rebuilds_only_the_changed_containers() -> None:
    builder = ContainerRecords()
    builder.build_body("h", _body(_summary("a", "web"), _summary("b", "db"), _summary("c", "old")), None)
    decoded: list[object] = []

    def decode(data: bytes, type_: type[object]) -> object:
        decoded.append(type_)
        return msgspec.json.decode(data, type=type_)

    body = _body(_summary("a", "web"), _summary("b", "db", "exited", "Exited (0) 1 second ago"), _summary("d", "new"))
    records, diff = builder.build_body("h", body, "t2", decode)
    assert decoded.count(ContainerSummary) == 2  # b (changed) and d (new); a reused
    assert [r.name for r in records] == ["db", "new", "web"]
    assert [(r.name, f) for r, f in diff.changed] == [("db", ("state", "status"))]
    assert [r.name for r in diff.added] == ["new"] and [r.name for r in diff.removed] == ["old"]
    expected = container_record("h", msgspec.json.decode(msgspec.json.encode(_summary("a", "web")), type=ContainerSummary), "t2")
    assert records[2] == expected


def test_a_wrong_shape_is_reported_as_the_whole_answer_would_be_and_changes_nothing() -> None:
    builder = ContainerRecords()
    good = _body(_summary("a", "web"))
    builder.build_body("h", good, None)
    bad = _body(_summary("a", "web"), {**_summary("b", "db"), "Names": "not-a-list"})
    with pytest.raises(msgspec.ValidationError) as raised:
        builder.build_body("h", bad, None)
    assert "$[1].Names" in str(raised.value)  # the path in the whole answer, not in the element
    again, diff = builder.build_body("h", good, "t3")
    assert not diff and [r.name for r in again] == ["web"]


def test_a_first_answer_is_decoded_as_one_typed_list_and_a_wrong_one_changes_nothing() -> None:
    """Nothing to reuse yet: the answer is decoded whole (one call), not element by element."""
    builder = ContainerRecords()
    calls: list[object] = []

    def decode(data: bytes, type_: type[object]) -> object:
        calls.append(type_)
        return msgspec.json.decode(data, type=type_)

    bad = _body(_summary("a", "web"), {**_summary("b", "db"), "Names": "not-a-list"})
    with pytest.raises(msgspec.ValidationError) as raised:
        builder.build_body("h", bad, None, decode)
    assert "$[1].Names" in str(raised.value)
    calls.clear()
    records, diff = builder.build_body("h", _body(_summary("a", "web"), _summary("b", "db")), "t1", decode)
    assert ContainerSummary not in calls and len(calls) == 2  # the raw elements, then the typed list
    assert [r.name for r in records] == ["db", "web"] and sorted(r.name for r in diff.added) == ["db", "web"]
    calls.clear()
    records, diff = builder.build_body("h", _body(_summary("a", "web"), _summary("b", "db", "exited")), "t2", decode)
    assert calls.count(ContainerSummary) == 1 and [(r.name, f) for r, f in diff.changed] == [("db", ("state",))]


def _rec(cid: str, state: str) -> ContainerRecord:
    return container_record("h", ContainerSummary(Id=cid, Names=(f"/{cid}",), State=state), None)


def _poll(state: FleetState, rows: tuple[ContainerRecord, ...], stamp: int, diff: ContainerDiff) -> None:
    facts = EngineFacts.from_info(SystemInfo(ID="e"), "1.41")
    state.poll_done("h", 0.01, PollSuccess(1.0, facts, msgspec.Raw(b"{}"), rows, diff, stamp=stamp))


def test_an_unchanged_poll_of_a_watched_host_still_moves_the_row_stamps() -> None:
    state = FleetState()
    state.add(HostSettings(name="h", url="tcp://127.0.0.1:1"))
    state.watch("h")
    rows = (_rec("a", "running"),)
    _poll(state, rows, state.next_stamp("h"), ContainerDiff(added=list(rows)))
    late = state.next_stamp("h")  # a refresh is sent ...
    again = (msgspec.structs.replace(rows[0], observed_at="t2"),)
    _poll(state, again, state.next_stamp("h"), ContainerDiff())  # ... a newer identical poll lands first
    record = state.get("h")
    assert record is not None and record.containers is again  # the poll's own rows, no merge copy
    state.refresh_rows("h", ["a"], [_rec("a", "exited")], late)  # older than that poll: refused
    assert [c.state for c in record.containers] == ["running"]
    state.refresh_rows("h", ["a"], [_rec("a", "exited")], state.next_stamp("h"))  # newer: applied
    assert [c.state for c in record.containers] == ["exited"]
    slow = (msgspec.structs.replace(rows[0], observed_at="t3"),)
    _poll(state, slow, late, ContainerDiff())  # an identical poll older than the refresh: merged, kept
    assert [c.state for c in record.containers] == ["exited"]


def test_the_event_loop_choice() -> None:
    assert event_loop_factory({"FLEETD_EVENT_LOOP": "asyncio"}) is None
    assert event_loop_factory({}) is None  # asyncio unless asked
    with pytest.raises(LoopChoiceError):
        event_loop_factory({"FLEETD_EVENT_LOOP": "tokio"})
    try:
        import uvloop
    except ImportError:
        assert event_loop_factory({"FLEETD_EVENT_LOOP": "auto"}) is None
        with pytest.raises(LoopChoiceError):
            event_loop_factory({"FLEETD_EVENT_LOOP": "uvloop"})
    else:
        assert event_loop_factory({"FLEETD_EVENT_LOOP": "uvloop"}) is uvloop.new_event_loop
        assert event_loop_factory({"FLEETD_EVENT_LOOP": "auto"}) is uvloop.new_event_loop


async def test_one_connection_per_host_polls_in_turn_and_a_hung_info_costs_one_timeout(
    fake_engine: FakeEngines, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fleetd.fleet.poller as poller_module

    monkeypatch.setattr(poller_module, "poll_connection_budget", lambda: 3)  # 2 hosts × 2 would not fit
    state = FleetState()
    connections = EngineConnections(keepalive=30)
    poller = Poller(state, PollSettings(interval=5.0, timeout=0.5, concurrency=10), connections)
    try:
        ok = await fake_engine(containers=3)
        hung = await fake_engine(containers=1)
        hung.behaviour.faults["info"] = Fault.HANG
        await poller.start([HostSettings(name="ok", url=ok.url, interval=5.0, timeout=0.5),
                            HostSettings(name="hung", url=hung.url, interval=5.0, timeout=0.5)])  # fmt: skip
        await eventually(lambda: all((r := state.get(n)) is not None and r.polls for n in ("ok", "hung")), timeout=5)
        good, bad = state.get("ok"), state.get("hung")
        assert good is not None and good.status is HostStatus.UP and len(good.containers) == 3
        assert bad is not None and bad.status is HostStatus.DOWN
        assert bad.poll_duration is not None and bad.poll_duration < 0.9  # one timeout, not two
        assert not any("/containers/json" in p for p in hung.paths())  # /info failed: nothing more asked
        polled = [p for p in ok.paths() if p.split("?")[0].endswith(("/info", "/containers/json"))]
        # in turn: /info first (unversioned: its answer names the version), then the list under it
        assert [p.split("?")[0] for p in polled][:2] == ["/info", "/v1.47/containers/json"]
    finally:
        await poller.aclose()
        await connections.aclose()


def test_engine_twins_answer_as_the_fleet_wide_scan_does() -> None:
    state = FleetState()
    for name in ("a", "b", "c"):
        state.add(HostSettings(name=name, url="tcp://127.0.0.1:1"))

    def poll_as(name: str, engine_id: str) -> None:
        facts = EngineFacts.from_info(SystemInfo(ID=engine_id), "1.41")
        state.poll_done(name, 0.01, PollSuccess(1.0, facts, msgspec.Raw(b"{}"), (), ContainerDiff()))

    def expected(name: str) -> dict[str, list[str]]:  # a scan of every host
        record = state.get(name)
        eid = record.facts.engine_id if record is not None and record.facts is not None else ""
        twins = sorted(r.name for r in state.records() if r.facts is not None and eid and r.facts.engine_id == eid)
        return {eid: twins} if len(twins) > 1 else {}

    poll_as("a", "E1")
    poll_as("b", "E1")
    poll_as("c", "E2")
    assert state.engine_twins("a") == {"E1": ["a", "b"]} == expected("a")
    assert state.engine_twins("c") == {} == expected("c")
    poll_as("b", "E2")  # b's daemon now reports c's ID
    assert [state.engine_twins(n) for n in "abc"] == [expected(n) for n in "abc"] == [{}, {"E2": ["b", "c"]}, {"E2": ["b", "c"]}]
    state.remove("c")
    assert state.engine_twins("b") == {} == expected("b")


async def test_a_queued_first_round_polls_each_host_over_one_connection(fake_engine: FakeEngines) -> None:
    """More hosts than poll slots: start-up opens one connection per host (info, then the list);
    once every first poll has ended, polls ask both at once again."""
    state = FleetState()
    connections = EngineConnections(keepalive=30)
    poller = Poller(state, PollSettings(interval=30.0, timeout=2.0, concurrency=1), connections)
    try:
        engines = [await fake_engine(containers=3), await fake_engine(containers=1)]
        await poller.start([HostSettings(name=f"h{i}", url=e.url, interval=30.0, timeout=2.0)
                            for i, e in enumerate(engines)])  # fmt: skip
        await eventually(lambda: state.first_round_done(), timeout=5)
        await eventually(lambda: poller._first_round.is_set(), timeout=5)
        connector = connections._tcp_connector
        assert connector is not None and len(connector.transports) == 2  # one per host
        for e in engines:
            assert [p.split("?")[0] for p in e.paths()][:2] == ["/info", "/v1.47/containers/json"]
        await poller.refresh("h0")  # the round is over: /info and the list at once, on two connections
        assert len(connector.transports) == 3
    finally:
        await poller.aclose()
        await connections.aclose()


async def test_a_first_round_within_the_slots_asks_both_at_once(fake_engine: FakeEngines) -> None:
    state = FleetState()
    connections = EngineConnections(keepalive=30)
    poller = Poller(state, PollSettings(interval=30.0, timeout=2.0, concurrency=10), connections)
    try:
        eng = await fake_engine(containers=3)
        await poller.start([HostSettings(name="a", url=eng.url, interval=30.0, timeout=2.0)])
        await eventually(lambda: (r := state.get("a")) is not None and r.polls == 1, timeout=5)
        connector = connections._tcp_connector
        assert connector is not None and len(connector.transports) == 2
    finally:
        await poller.aclose()
        await connections.aclose()
