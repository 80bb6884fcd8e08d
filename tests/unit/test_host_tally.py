"""The summary's host counts and the host pages, kept by the writer (fleet/host_tally.py), equal what
counting every record gives: on random fleets after random writes (successes, failures, late answers,
status verdicts of event watchers, findings, new settings, clones, removals) and as time passes."""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetd.config.model import HostSettings
from fleetd.fleet.findings import security_summary
from fleetd.fleet.match import label_matches
from fleetd.fleet.records import Finding, HostRecord, HostStatus, diff_containers
from fleetd.fleet.state import FleetState, PollFailure, PollSuccess
from tests.unit.snapshotkit import NOW, Clock, facts
from tests.unit.test_index import HOSTS, brute_summary, records

FINDINGS = [
    (),
    (Finding("insecure_transport", "plain TCP"),),
    (Finding("tls_cert_expiring", "soon"), Finding("tls_cert_expiring", "sooner")),
    (Finding("tls_verify_disabled", "no"), Finding("custom", "x")),
]
OPS = ["poll", "poll", "late", "clone", "fail", "error", "status", "findings", "settings", "tick", "drop", "add"]


def brute_hosts(state: FleetState, status: HostStatus | None, labels: list[str]) -> list[HostRecord]:
    return [
        r
        for r in state.records()
        if (status is None or r.status is status) and label_matches(dict(r.settings.labels), labels)
    ]


def _settings(host: str, interval: float = 10.0, env: str = "prod") -> HostSettings:
    port = 2375 + HOSTS.index(host)
    return HostSettings(name=host, url=f"tcp://127.0.0.1:{port}", interval=interval, timeout=1.0, labels={"env": env})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), writes=st.lists(st.tuples(st.sampled_from(OPS), st.sampled_from(HOSTS)), max_size=16))
def test_tallied_summary_and_host_pages_equal_counting_every_record(
    data: st.DataObject, writes: list[tuple[str, str]]
) -> None:
    clock = Clock()
    state = FleetState(clock=clock)
    for h in HOSTS:
        state.add(_settings(h))
    state.add(HostSettings(name="off", url="tcp://127.0.0.1:2999", enabled=False))

    def poll(host: str, at: float, engine: int) -> None:
        record = state.get(host)
        assert record is not None
        new = data.draw(records(host))
        diff = diff_containers(record.containers, new)
        state.poll_done(host, 0.01, PollSuccess(at, facts(engine), msgspec.Raw(b"{}"), new, diff))

    for op, host in writes:
        clock.now += 1
        if op == "tick":
            clock.now += data.draw(st.sampled_from([5.0, 15.0, 25.0]))  # some hosts go stale
        elif op == "add" and host not in state:
            state.add(_settings(host, env="dev"))
        elif host not in state:
            continue
        elif op == "poll":
            poll(host, clock.now, HOSTS.index(host))
        elif op == "late":  # an answer stamped before the newest one (the wall clock set back)
            poll(host, clock.now - data.draw(st.sampled_from([3.0, 30.0])), HOSTS.index(host))
        elif op == "clone":  # a cloned VM: another host's engine ID
            poll(host, clock.now, 0)
        elif op in ("fail", "error"):
            status = HostStatus.DOWN if op == "fail" else HostStatus.ERROR
            state.poll_done(host, 0.01, PollFailure(clock.now, status, "refused"))
        elif op == "status":
            state.set_host_status(host, data.draw(st.sampled_from([HostStatus.UP, HostStatus.DOWN])), "stream ended")
        elif op == "findings":
            state.set_findings(host, data.draw(st.sampled_from(FINDINGS)))
        elif op == "settings":
            state.update_settings(host, _settings(host, data.draw(st.sampled_from([5.0, 10.0, 30.0]))))
        elif op == "drop":
            state.remove(host)
        for now in (clock.now, clock.now + 12, clock.now + 25, clock.now + 40):  # readers ask at any time
            clock_now, clock.now = clock.now, now
            assert state.summary() == brute_summary(state), (op, host, now)
            clock.now = clock_now
        assert state.security_counts() == security_summary(state.records())
        for status in (None, *HostStatus):
            for labels in ([], ["env=prod"]):
                expected = brute_hosts(state, status, labels)
                offset, limit = data.draw(st.integers(0, 5)), data.draw(st.none() | st.integers(0, 4))
                page = expected[offset : None if limit is None else offset + limit]
                assert state.hosts_page(status, labels, offset, limit) == (page, len(expected)), (status, labels)


def test_the_stale_hosts_are_found_without_visiting_the_fresh_ones() -> None:
    clock = Clock()
    state = FleetState(clock=clock)
    for i in range(100):
        name = f"h{i:03d}"
        state.add(HostSettings(name=name, url=f"tcp://127.0.0.1:{3000 + i}", interval=10.0, timeout=1.0))
        state.poll_done(name, 0.01, PollSuccess(NOW + i, facts(i), msgspec.Raw(b"{}"), (), diff_containers((), ())))
    visited: list[str] = []
    hosts = state._hosts

    class Spy(dict[str, HostRecord]):
        def __getitem__(self, name: str) -> HostRecord:
            visited.append(name)
            return hosts[name]

    stale = list(state._tally.stale_hosts(Spy(hosts), NOW + 3 + 21.5))  # h000..h003 older than 21 s
    assert [r.name for r in stale] == ["h000", "h001", "h002", "h003"]
    assert visited == ["h000", "h001", "h002", "h003", "h004"]  # and the first fresh one


def _poll(state: FleetState, name: str, at: float) -> None:
    state.poll_done(name, 0.01, PollSuccess(at, facts(0), msgspec.Raw(b"{}"), (), diff_containers((), ())))


def test_an_answer_stamped_before_the_newest_is_still_found_stale() -> None:
    clock = Clock()
    state = FleetState(clock=clock)
    for name in ("a", "b"):
        state.add(HostSettings(name=name, url="tcp://127.0.0.1:1", interval=10.0, timeout=1.0))
    _poll(state, "a", NOW)
    _poll(state, "b", NOW - 30)  # the wall clock was set back, or the answer is older
    assert state.summary().hosts.stale == 1 == len([r for r in state.records() if r.is_stale(NOW)])


def test_new_settings_move_a_host_to_its_new_staleness() -> None:
    clock = Clock()
    state = FleetState(clock=clock)
    state.add(HostSettings(name="a", url="tcp://127.0.0.1:1", interval=10.0, timeout=1.0))
    _poll(state, "a", NOW)
    state.update_settings("a", HostSettings(name="a", url="tcp://127.0.0.1:1", interval=30.0, timeout=1.0))
    clock.now = NOW + 30  # older than 2 × 10 + 1, not than 2 × 30 + 1
    assert state.summary().hosts.stale == 0
    clock.now = NOW + 62
    assert state.summary().hosts.stale == 1
