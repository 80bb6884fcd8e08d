"""The poller against fake Engines: versions, faults, isolation, staleness, actions."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
import structlog

from fleetd.config.model import HostSettings, PollSettings
from fleetd.dockerapi import EngineConnections
from fleetd.fleet.poller import Poller
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from tests.fakes import FakeEngines
from tests.fakes.behaviour import Fault, docker_20_10, docker_29, podman
from tests.harness import eventually

VERSIONED = re.compile(r"^/v\d+\.\d+/")


class Harness:
    def __init__(self, poll: PollSettings) -> None:
        self.state = FleetState()
        self.connections = EngineConnections(keepalive=30)
        self.poll = poll
        self.poller = Poller(self.state, poll, self.connections)

    def host(self, name: str, url: str, **kw: object) -> HostSettings:
        return HostSettings(
            name=name,
            url=url,
            interval=float(kw.pop("interval", self.poll.interval)),  # type: ignore[arg-type]
            timeout=float(kw.pop("timeout", self.poll.timeout)),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )

    def status(self, name: str) -> HostStatus:
        rec = self.state.get(name)
        assert rec is not None
        return rec.status


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(PollSettings(interval=1.0, timeout=0.5, concurrency=50, max_backoff=1.0))
    try:
        yield h
    finally:
        await h.poller.aclose()
        await h.connections.aclose()


async def test_docker_20_10_is_polled_at_its_own_api_version(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(docker_20_10(containers=7))
    await harness.poller.start([harness.host("old", eng.url)])
    await eventually(lambda: harness.status("old") is HostStatus.UP)
    rec = harness.state.get("old")
    assert rec is not None and rec.facts is not None
    assert rec.facts.api_version == "1.41"
    assert rec.facts.server_version == "20.10.24+dfsg1"
    assert len(rec.containers) == 7
    assert [c.name for c in rec.containers] == sorted(c.name for c in rec.containers)
    # No /_ping: the first poll went out unversioned, and its answers' Api-Version (1.41, not
    # above ours) is the version they were answered at; every later request names it.
    await harness.poller.refresh("old")
    paths = eng.paths()
    assert "/_ping" not in paths
    first = [p for p in paths if not VERSIONED.match(p)]
    assert sorted(paths[:2]) == sorted(first) == ["/containers/json?all=1", "/info"], paths
    later = paths[2:]
    assert later and all(p.startswith("/v1.41/") for p in later), paths
    assert any(p.startswith("/v1.41/containers/json") and "all=1" in p for p in later)
    assert not any("size" in p for p in paths)


async def test_docker_29_gets_our_newest_version_not_below_its_minimum(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(docker_29(containers=3))
    await harness.poller.start([harness.host("new", eng.url)])
    await eventually(lambda: harness.status("new") is HostStatus.UP)
    # It answers unversioned requests at 1.52, newer than ours: those answers are dropped and the
    # requests sent again at 1.51, so nothing is ever read in a format newer than ours.
    paths = eng.paths()
    unversioned = [p for p in paths if not VERSIONED.match(p)]
    assert sorted(unversioned) == ["/containers/json?all=1", "/info"], paths
    assert "/v1.51/info" in paths and "/v1.51/containers/json?all=1" in paths
    assert all(p.startswith("/v1.51/") for p in paths if p not in unversioned)
    rec = harness.state.get("new")
    assert rec is not None and rec.facts is not None and rec.facts.api_version == "1.51"
    assert len(rec.containers) == 3


async def test_podman_compat_api(harness: Harness, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(podman(containers=2))
    await harness.poller.start([harness.host("pod", eng.url)])
    await eventually(lambda: harness.status("pod") is HostStatus.UP)
    rec = harness.state.get("pod")
    assert rec is not None and len(rec.containers) == 2
    # Server: Libpod/...: its /info ID is new on every call, so none is kept and none is a duplicate
    assert rec.facts is not None and rec.facts.engine_id == "" and rec.facts.engine_id_volatile


async def test_missing_api_version_header_falls_back_to_version_endpoint(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(docker_29(containers=1, ping_api_version_header=None))
    await harness.poller.start([harness.host("nohdr", eng.url)])
    await eventually(lambda: harness.status("nohdr") is HostStatus.UP)
    # The first answers name no version: /_ping (no header either), then /version, then the
    # requests again under the version negotiated from it.
    paths = eng.paths()
    unversioned = [p for p in paths if not VERSIONED.match(p)]
    assert sorted(unversioned) == ["/_ping", "/containers/json?all=1", "/info", "/version"], paths
    assert paths.index("/_ping") < paths.index("/version") < paths.index("/v1.51/info")
    assert all(p.startswith("/v1.51/") for p in paths if p not in unversioned)


async def test_too_old_api_version_is_an_error_with_a_reason(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(api_version="1.12", min_api_version="1.12")
    await harness.poller.start([harness.host("ancient", eng.url)])
    await eventually(lambda: harness.status("ancient") is HostStatus.ERROR)
    rec = harness.state.get("ancient")
    assert rec is not None and rec.last_error is not None
    assert "1.12" in rec.last_error and "1.24" in rec.last_error


@pytest.mark.parametrize(
    ("fault", "status", "words"),
    [
        (Fault.STATUS_500, HostStatus.ERROR, "HTTP 500"),
        (Fault.INVALID_JSON, HostStatus.ERROR, "invalid JSON"),
        (Fault.WRONG_SHAPE, HostStatus.ERROR, "unexpected answer shape"),
        (Fault.CLOSE_CONNECTION, HostStatus.DOWN, "closed the connection"),
        (Fault.HANG, HostStatus.DOWN, "no answer within 0.5s"),
    ],
)
@pytest.mark.parametrize("endpoint", ["info", "containers"])
async def test_faults_are_classified_and_explained(
    harness: Harness, fake_engine: FakeEngines, fault: Fault, status: HostStatus, words: str, endpoint: str
) -> None:
    bad = await fake_engine(containers=2)
    bad.behaviour.faults[endpoint] = fault  # type: ignore[index]
    await harness.poller.start([harness.host("bad", bad.url)])
    await eventually(lambda: harness.status("bad") is status, timeout=3)
    rec = harness.state.get("bad")
    assert rec is not None and rec.last_error is not None
    assert words in rec.last_error, rec.last_error
    assert rec.consecutive_failures >= 1
    assert rec.first_poll_done


async def test_connection_refused_is_down(harness: Harness, fake_engine: FakeEngines) -> None:
    eng = await fake_engine(containers=1)
    url = eng.url
    await eng.aclose()
    await harness.poller.start([harness.host("gone", url)])
    await eventually(lambda: harness.status("gone") is HostStatus.DOWN)
    rec = harness.state.get("gone")
    assert rec is not None and rec.last_error is not None and "connection refused" in rec.last_error


async def test_a_hanging_host_never_delays_the_others(fake_engine: FakeEngines) -> None:
    h = Harness(PollSettings(interval=5.0, timeout=3.0, concurrency=10))
    try:
        hung = await fake_engine(containers=1)
        hung.behaviour.faults["*"] = Fault.HANG
        healthy = [await fake_engine(containers=3, latency=0.02) for _ in range(5)]
        started = time.monotonic()
        await h.poller.start(
            [h.host("hung", hung.url)] + [h.host(f"ok{i}", e.url) for i, e in enumerate(healthy)]
        )
        await eventually(lambda: all(h.status(f"ok{i}") is HostStatus.UP for i in range(5)), timeout=2.5)
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, elapsed  # far less than the 3 s the hung host holds its own poll
        assert h.status("hung") is HostStatus.UNKNOWN
        assert not h.state.is_ready()  # readiness waits for the hung host's first attempt...
        await eventually(lambda: h.status("hung") is HostStatus.DOWN, timeout=5)
        assert h.state.is_ready()  # ...which ends with its timeout
    finally:
        await h.poller.aclose()
        await h.connections.aclose()


async def test_failure_keeps_last_data_as_stale_and_recovery_clears_it(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=4)
    await harness.poller.start([harness.host("flaky", eng.url)])
    await eventually(lambda: harness.status("flaky") is HostStatus.UP)
    rec = harness.state.get("flaky")
    assert rec is not None
    seen = rec.last_seen
    eng.behaviour.faults["containers"] = Fault.STATUS_500
    await eventually(lambda: harness.status("flaky") is HostStatus.ERROR, timeout=3)
    assert len(rec.containers) == 4 and rec.last_seen == seen
    assert rec.is_stale(time.time())
    from fleetd.fleet.state import ContainerQuery

    listed = harness.state.containers(ContainerQuery(hosts=("flaky",)))
    assert len(listed) == 4 and all(c.stale for c in listed)
    eng.behaviour.faults.clear()
    await eventually(lambda: harness.status("flaky") is HostStatus.UP, timeout=4)
    assert rec.consecutive_failures == 0 and rec.last_error is None
    assert not rec.is_stale(time.time())


async def test_state_changes_are_logged_once_not_per_failed_poll(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=1)
    with structlog.testing.capture_logs() as logs:
        # A timeout generous for a loaded machine: a first poll that times out would log "host down".
        await harness.poller.start([harness.host("noisy", eng.url, interval=0.3, timeout=2.0)])
        await eventually(lambda: harness.status("noisy") is HostStatus.UP)
        eng.behaviour.faults["info"] = Fault.STATUS_500
        rec = harness.state.get("noisy")
        assert rec is not None
        await eventually(lambda: rec.consecutive_failures >= 3, timeout=5)
        eng.behaviour.faults.clear()
        await eventually(lambda: harness.status("noisy") is HostStatus.UP, timeout=5)
    events = [e["event"] for e in logs if e.get("host") == "noisy"]
    assert events == ["host error", "host recovered"], events  # its coming up: the round's line
    (done,) = [e for e in logs if e["event"] == "first poll round done"]
    assert (done["up"], done["down"], done["error"]) == (1, 0, 0) and "host" not in done


async def test_the_first_round_is_one_line_and_later_hosts_get_their_own(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    """A start-up logs one line for its first round (how many hosts came up, their Engine versions)
    instead of a line per host; a failing host is still logged on its own, and a host added later
    gets its own "host up"."""
    engines = [await fake_engine(containers=1) for _ in range(3)]
    with structlog.testing.capture_logs() as logs:
        hosts = [harness.host(f"h{i}", e.url) for i, e in enumerate(engines)]
        hosts.append(harness.host("gone", "tcp://127.0.0.1:9", timeout=2.0))
        await harness.poller.start(hosts)
        await eventually(lambda: harness.state.is_ready(), timeout=10)
        await eventually(lambda: any(e["event"] == "first poll round done" for e in logs))
        late = await fake_engine(containers=1)
        await harness.poller.reconcile([*hosts, harness.host("late", late.url)], harness.poll)
        await eventually(lambda: harness.status("late") is HostStatus.UP)
    per_host = sorted((e["event"], e.get("host")) for e in logs if e["event"].startswith("host "))
    assert per_host == [("host down", "gone"), ("host up", "late")], per_host
    (done,) = [e for e in logs if e["event"] == "first poll round done"]
    assert (done["up"], done["down"], done["error"]) == (3, 1, 0), done
    assert sum(done["server_versions"].values()) == 3 and done["seconds"] >= 0


async def test_duplicate_engine_ids_are_both_kept(harness: Harness, fake_engine: FakeEngines) -> None:
    a = await fake_engine(engine_id="CLONED-VM", containers=2)
    b = await fake_engine(engine_id="CLONED-VM", containers=3)
    await harness.poller.start([harness.host("vm-a", a.url), harness.host("vm-b", b.url)])
    await eventually(
        lambda: harness.status("vm-a") is HostStatus.UP and harness.status("vm-b") is HostStatus.UP
    )
    assert harness.state.duplicate_engine_ids() == {"CLONED-VM": ["vm-a", "vm-b"]}
    from fleetd.fleet.state import ContainerQuery

    assert len(harness.state.containers(ContainerQuery())) == 5


async def test_images_are_listed_every_nth_poll(fake_engine: FakeEngines) -> None:
    h = Harness(PollSettings(interval=0.2, timeout=0.1, images_every=3, jitter=0.0))
    try:
        eng = await fake_engine(containers=1)
        await h.poller.start([h.host("img", eng.url)])
        rec = h.state.get("img")
        assert rec is not None
        await eventually(lambda: rec.polls >= 6, timeout=5)
        await h.poller.aclose()
        info_calls = sum(1 for p in eng.paths() if p.endswith("/info"))
        image_calls = sum(1 for p in eng.paths() if "/images/json" in p)
        assert rec.images is not None
        assert image_calls == -(-info_calls // 3), (info_calls, image_calls)
    finally:
        await h.poller.aclose()
        await h.connections.aclose()


async def test_refresh_discards_a_poll_that_started_before_the_action(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(containers=2)
    await harness.poller.start([harness.host("act", eng.url, interval=0.9, timeout=0.8)])
    await eventually(lambda: harness.status("act") is HostStatus.UP)
    rec = harness.state.get("act")
    assert rec is not None
    before = rec.polls
    # Make the next poll slow, start it, then "act" while it is in flight.
    eng.behaviour.latency = 0.3
    infos = sum(1 for p in eng.paths() if p.endswith("/info"))
    harness.poller.wake("act")
    await eventually(lambda: sum(1 for p in eng.paths() if p.endswith("/info")) > infos)
    seen_before = rec.last_seen
    eng.behaviour.latency = 0.0
    await harness.poller.refresh("act")
    # The in-flight poll was discarded and a new one, started after the action, was applied.
    assert rec.polls >= before + 2
    assert rec.last_seen is not None and seen_before is not None and rec.last_seen > seen_before


async def test_a_request_times_out_from_its_slot_not_from_the_queue(fake_engine: FakeEngines) -> None:
    # One slot, three hosts each answering in 0.3 s with a 0.5 s timeout: queued hosts wait
    # longer than 0.5 s in total, yet none of them times out.
    h = Harness(PollSettings(interval=5.0, timeout=0.5, concurrency=1))
    try:
        engines = [await fake_engine(containers=1, latency=0.3) for _ in range(3)]
        await h.poller.start([h.host(f"q{i}", e.url) for i, e in enumerate(engines)])
        await eventually(lambda: all(r.first_poll_done for r in h.state.records()), timeout=5)
        assert [h.status(f"q{i}") for i in range(3)] == [HostStatus.UP] * 3
    finally:
        await h.poller.aclose()
        await h.connections.aclose()


async def test_unix_socket_host(harness: Harness, fake_engine: FakeEngines, tmp_path: object) -> None:
    import pathlib

    sock = pathlib.Path(str(tmp_path)) / "d.sock"
    await fake_engine(docker_20_10(containers=2), unix_path=sock)
    await harness.poller.start([harness.host("sock", f"unix://{sock}")])
    await eventually(lambda: harness.status("sock") is HostStatus.UP)


async def test_first_poll_leaves_images_out_and_lists_them_right_after(fake_engine: FakeEngines) -> None:
    h = Harness(PollSettings(interval=30.0, timeout=1.0, images_every=5))
    try:
        eng = await fake_engine(containers=2)
        await h.poller.start([h.host("img", eng.url)])
        rec = h.state.get("img")
        assert rec is not None
        await eventually(lambda: rec.images is not None)
        paths = [p.split("?")[0] for p in eng.paths()]
        # info and containers (any order, unversioned: no /_ping first), then images under the
        # version their answers named — no second full poll
        assert sorted(paths[:2]) == ["/containers/json", "/info"], paths
        assert paths[2:] == ["/v1.47/images/json"], paths
        assert rec.polls == 1
    finally:
        await h.poller.aclose()
        await h.connections.aclose()


async def test_actions_never_push_the_regular_poll_back(fake_engine: FakeEngines) -> None:
    """Eight no-op actions in a row (each with its extra poll) leave the next regular poll on time."""
    h = Harness(PollSettings(interval=1.5, timeout=0.5, concurrency=5, max_backoff=1.5, jitter=0.0))
    eng = await fake_engine(docker_20_10(containers=1))
    try:
        await h.poller.start([h.host("a", eng.url)])
        await eventually(lambda: h.status("a") is HostStatus.UP)
        await asyncio.sleep(0.2)  # past the start-up poll's image listing
        rec = h.state.get("a")
        assert rec is not None
        polls_before = rec.polls
        started = time.monotonic()
        for _ in range(8):
            await h.poller.refresh("a")  # what every single-container action does afterwards
        assert rec.polls == polls_before + 8
        # the first regular poll after the actions comes within one interval of when they began
        await eventually(lambda: rec.polls >= polls_before + 9, timeout=1.5 + 1.0)
        assert time.monotonic() - started < 1.5 + 1.0
    finally:
        await h.poller.aclose()
        await h.connections.aclose()


async def test_a_reload_that_only_moves_lines_reports_every_host_unchanged(
    harness: Harness, fake_engine: FakeEngines
) -> None:
    eng = await fake_engine(docker_20_10(containers=1))
    first = [harness.host(n, eng.url, source=f"fleetd.yaml:{i + 3}") for i, n in enumerate("abc")]
    await harness.poller.start(first)
    await eventually(lambda: all(harness.status(n) is HostStatus.UP for n in "abc"))
    moved = [harness.host(n, eng.url, source=f"fleetd.yaml:{i + 9}") for i, n in enumerate("abc")]
    report = await harness.poller.reconcile(moved, harness.poll)
    assert report.unchanged == ("a", "b", "c") and report.updated == () and report.reconnected == ()
    rec = harness.state.get("b")
    assert rec is not None and rec.settings.source == "fleetd.yaml:10"  # errors point at the new line
    relabelled = [harness.host("a", eng.url, source="fleetd.yaml:9", labels={"env": "prod"}), *moved[1:]]
    assert (await harness.poller.reconcile(relabelled, harness.poll)).updated == ("a",)


async def test_a_poll_starved_of_a_slot_is_logged_once_and_counted(fake_engine: FakeEngines) -> None:
    h = Harness(PollSettings(interval=1.0, timeout=0.5, concurrency=1, max_backoff=1.0, jitter=0.0))
    ok = await fake_engine(docker_20_10(containers=1))
    hung = await fake_engine(docker_20_10(containers=1))
    try:
        await h.poller.start([h.host("ok", ok.url)])
        await eventually(lambda: h.status("ok") is HostStatus.UP)
        hung.behaviour.faults["*"] = Fault.HANG
        with structlog.testing.capture_logs() as logs:
            await h.poller.reconcile([h.host("ok", ok.url), h.host("hung", hung.url, timeout=6.0)], h.poll)
            rec = h.state.get("ok")
            assert rec is not None
            await eventually(lambda: rec.polls_overdue == 1, timeout=8.0)  # the hung host holds the one slot
            await asyncio.sleep(1.5)
        overdue = [e for e in logs if e["event"] == "poll overdue"]
        assert [e["host"] for e in overdue] == ["ok"]  # once, not every second
        assert rec.polls_overdue == 1
    finally:
        await h.poller.aclose()
        await h.connections.aclose()


async def test_image_listings_wait_for_the_last_first_poll_and_cost_no_extra_poll(fake_engine: FakeEngines) -> None:
    h = Harness(PollSettings(interval=30.0, timeout=2.0, images_every=5))
    try:
        fast = [await fake_engine(containers=1) for _ in range(3)]
        slow = await fake_engine(containers=1)
        slow.behaviour.faults["info"] = Fault.SLOW
        slow.behaviour.slow_seconds = 0.5
        await h.poller.start([h.host(f"f{i}", e.url) for i, e in enumerate(fast)] + [h.host("slow", slow.url)])
        await eventually(lambda: all(h.status(f"f{i}") is HostStatus.UP for i in range(3)))
        await asyncio.sleep(0.1)
        # the slow host's first poll has not ended: nobody lists images yet
        assert h.status("slow") is HostStatus.UNKNOWN
        assert not any("/images/json" in p for e in fast for p in e.paths())
        await eventually(lambda: all((r := h.state.get(n)) is not None and r.images is not None
                                     for n in ("f0", "f1", "f2", "slow")), timeout=5)  # fmt: skip
        await asyncio.sleep(0.1)
        for i, e in enumerate(fast):  # woken by the round's end: images listed, no poll added
            rec = h.state.get(f"f{i}")
            assert rec is not None and rec.polls == 1
            assert sum(1 for p in e.paths() if "/containers/json" in p) == 1
    finally:
        await h.poller.aclose()
        await h.connections.aclose()
