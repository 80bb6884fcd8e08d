"""The indexed container queries give exactly what a scan of every record gives, on random fleets,
random queries, and after random writes through every writer (polls, event watchers, reloads)."""

from __future__ import annotations

import sys
from collections import Counter
from fnmatch import fnmatchcase
from unittest.mock import patch

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetd.config.model import HostSettings
from fleetd.fleet import index as index_module
from fleetd.fleet.match import container_image_matches, label_matches
from fleetd.fleet.queries import ContainerCounts, FleetSummary, HostCounts
from fleetd.fleet.records import ContainerRecord, HostStatus, diff_containers
from fleetd.fleet.state import ContainerQuery, FleetState, PollFailure, PollSuccess
from tests.unit.snapshotkit import NOW, Clock, container, facts

HOSTS = ["a", "b", "c", "d"]
NAMES = ["web-1", "web-2", "api-1", "db", "job-7", "cache"]
STATES = ["running", "exited", "paused", "created"]
HEALTH = ["none", "healthy", "unhealthy", "starting"]
IMAGES = [
    ("nginx:1.27", "sha256:" + "ab" * 32),
    ("nginx:1.25", "sha256:" + "ac" * 32),
    ("registry:5000/app:2", "sha256:" + "cd" * 32),
    ("busybox", "sha256:" + "ef" * 32),
]
LABELS = st.dictionaries(
    st.sampled_from(["app", "env", "tier"]), st.sampled_from(["web", "prod", "x=y", ""]), max_size=3
)


@st.composite
def records(draw: st.DrawFn, host: str) -> tuple[ContainerRecord, ...]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    out = []
    for name in names:
        image, image_id = draw(st.sampled_from(IMAGES))
        extra = draw(st.lists(st.sampled_from(["alias", "web-1-old"]), max_size=1))
        out.append(
            container(
                host,
                name,
                names=[name, *extra],
                state=draw(st.sampled_from(STATES)),
                health=draw(st.sampled_from(HEALTH)),
                image=image,
                image_id=image_id,
                labels=draw(LABELS),
            )
        )
    return tuple(sorted(out, key=lambda c: c.name))


@st.composite
def mutated(draw: st.DrawFn, c: ContainerRecord) -> ContainerRecord:
    how = draw(st.sampled_from(["same", "fields", "fields", "rename"]))
    if how == "same":
        return msgspec.structs.replace(c, observed_at=None)  # a new object, nothing else changed
    if how == "rename":  # the same container under a new name: it moves in its host's rows
        return msgspec.structs.replace(c, name="z-" + c.name, names=["z-" + c.name, *c.names[1:]])
    image, image_id = draw(st.sampled_from(IMAGES))
    return msgspec.structs.replace(
        c,
        state=draw(st.sampled_from(STATES)),
        health=draw(st.sampled_from(HEALTH)),
        labels=draw(LABELS),
        image=image,
        image_id=image_id,
    )


QUERIES = st.builds(
    ContainerQuery,
    hosts=st.lists(st.sampled_from(HOSTS), unique=True, max_size=2).map(tuple),
    state=st.none() | st.sampled_from(STATES),
    health=st.none() | st.sampled_from(HEALTH),
    stale=st.none() | st.booleans(),
    labels=st.lists(
        st.sampled_from(["app", "env", "app=web", "env=prod", "tier=x=y", "tier=", "nope"]), max_size=2
    ).map(tuple),
    image=st.none()
    | st.sampled_from(
        ["nginx", "nginx:1.27", "registry:5000/app", "busybox", "ab" * 6, "sha256:" + "cd" * 8, "x"]
    ),
    name=st.none()
    | st.sampled_from(
        [
            "web",
            "-1",
            "alias",
            "db",
            "zzz",
            "b-1-o",
            "web-1",
            "web-*",
            "*-1*",
            "*",
            "db-?",
            "[wd]*-1",
            "*[!b]-2",
            "a[l",
            "*old",
        ]
    ),
)


def scan(state: FleetState, query: ContainerQuery) -> list[ContainerRecord]:
    """What FleetState.containers answered before the index: every predicate on every record."""
    now = state.clock()
    wanted = set(query.hosts)
    out = []
    for record in state.sorted_records():
        if wanted and record.name not in wanted:
            continue
        stale = record.is_stale(now)
        if query.stale is not None and query.stale != stale:
            continue
        for c in record.containers:
            if query.state is not None and c.state != query.state:
                continue
            if query.health is not None and c.health != query.health:
                continue
            if query.name is not None and not any(fnmatchcase(n, query.name) for n in c.names or [c.name]):
                continue
            if query.labels and not label_matches(c.labels, query.labels):
                continue
            if query.image is not None and not container_image_matches(c, query.image):
                continue
            out.append(msgspec.structs.replace(c, stale=True) if stale else c)
    return out


def brute_summary(state: FleetState) -> FleetSummary:
    """The summary counted from every record, as the state did before it read the index."""
    now = state.clock()
    records = state.sorted_records()
    by_host_state = Counter({s.value: 0 for s in HostStatus})
    by_host_state.update(r.status.value for r in state.records())
    every = [c for r in records for c in r.containers]
    stale = [r for r in records if r.is_stale(now)]
    images = Counter(c.image for c in every)
    by_engine = Counter(r.facts.engine_id for r in records if r.facts is not None and r.facts.engine_id)
    duplicates = sum(n for n in by_engine.values() if n > 1)
    assert state.duplicate_engine_ids() == {
        eid: sorted(r.name for r in records if r.facts is not None and r.facts.engine_id == eid)
        for eid, n in by_engine.items()
        if n > 1
    }
    return FleetSummary(
        hosts=HostCounts(len(records), dict(by_host_state), len(stale), duplicates),
        containers=ContainerCounts(
            len(every), dict(sorted(Counter(c.state for c in every).items())), sum(len(r.containers) for r in stale)
        ),
        images=dict(sorted(images.items(), key=lambda kv: (-kv[1], kv[0]))),
        ready=state.is_ready(),
        generated_at=now,
    )


def poll(state: FleetState, host: str, new: tuple[ContainerRecord, ...], at: float) -> None:
    record = state.get(host)
    assert record is not None
    diff = diff_containers(record.containers, new)
    state.poll_done(host, 0.01, PollSuccess(at, facts(HOSTS.index(host)), msgspec.Raw(b"{}"), new, diff))


WRITES = st.lists(
    st.tuples(
        st.sampled_from(
            ["poll", "mutate", "mutate", "upsert", "remove", "replace", "drop-host", "add-host", "compact"]
        ),
        st.sampled_from(HOSTS),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), writes=WRITES, queries=st.lists(QUERIES, min_size=1, max_size=8))
def test_indexed_answers_equal_a_full_scan(
    data: st.DataObject, writes: list[tuple[str, str]], queries: list[ContainerQuery]
) -> None:
    clock = Clock()
    state = FleetState(clock=clock)
    for i, h in enumerate(HOSTS):
        state.add(HostSettings(name=h, url=f"tcp://127.0.0.1:{2375 + i}", interval=10.0, timeout=1.0))
        poll(state, h, data.draw(records(h)), NOW)
    for q in queries:  # the index right after the first polls
        assert state.containers(q) == scan(state, q)
    for step, (op, host) in enumerate(writes):
        clock.now = NOW + step + 1
        if op == "add-host" and host not in state:
            state.add(HostSettings(name=host, url="tcp://127.0.0.1:2999", interval=10.0, timeout=1.0))
            op = "poll"
        if op == "compact":  # every posting set copied (the real threshold skips small sets)
            with patch.object(index_module, "_COMPACT_MIN", 0), patch.object(index_module, "_SPARSE", 0):
                state._index.compact()
        if host not in state:
            continue
        if op == "poll":
            poll(state, host, data.draw(records(host)), clock.now)
        elif op == "mutate":  # the same containers, some of them changed: the index must follow
            record = state.get(host)
            assert record is not None
            rows = sorted((data.draw(mutated(c)) for c in record.containers), key=lambda c: c.name)
            poll(state, host, tuple(rows), clock.now)
        elif op == "upsert":
            state.upsert_containers(host, data.draw(records(host)))
        elif op == "remove":
            record = state.get(host)
            assert record is not None
            ids = [c.id for c in record.containers]
            state.remove_containers(
                host, data.draw(st.lists(st.sampled_from(ids), max_size=3)) if ids else []
            )
        elif op == "replace":
            state.replace_containers(host, data.draw(records(host)), gap=True)
        elif op == "drop-host":
            state.remove(host)
        assert state.summary() == brute_summary(state), (op, host)
        for q in queries:
            expected = scan(state, q)
            assert state.containers(q) == expected, (op, host, q)
            offset, limit = data.draw(st.integers(0, 8)), data.draw(st.none() | st.integers(0, 6))
            page = expected[offset : None if limit is None else offset + limit]
            for walk in (None, True, False):  # by cost, fleet order walked, order keys sorted
                state._index.walk = walk
                assert state.containers_page(q, offset, limit) == (page, len(expected)), (q, offset, limit, walk)
            state._index.walk = None
    clock.now = NOW + 10_000  # every host stale now: ?stale= and the stale copies
    assert state.summary() == brute_summary(state)
    for q in queries:
        assert state.containers(q) == scan(state, q)


def test_compaction_shrinks_sparse_posting_sets_and_keeps_every_answer() -> None:
    state = FleetState(clock=Clock())
    queries = [
        ContainerQuery(state="running"),
        ContainerQuery(labels=("app=web",), state="exited"),
        ContainerQuery(hosts=("a",), image="nginx"),
        ContainerQuery(labels=("app",)),
    ]
    state.add(HostSettings(name="never", url="tcp://127.0.0.1:1", interval=10.0, timeout=1.0))  # not ready
    with patch.object(index_module, "_COMPACT_EVERY", 10**9):  # only when asked below
        for i, h in enumerate(HOSTS):
            state.add(HostSettings(name=h, url=f"tcp://127.0.0.1:{2375 + i}", interval=10.0, timeout=1.0))
            rows = tuple(
                sorted(
                    (
                        container(
                            h,
                            f"c{n:04d}",
                            state=STATES[n % 2],
                            image="nginx:1.27" if n % 3 else "busybox",
                            labels={"app": "web" if n % 5 else "db"},
                        )
                        for n in range(500)
                    ),
                    key=lambda c: c.name,
                )
            )
            poll(state, h, rows, NOW)
        before = [state.containers(q) for q in queries]
        post = state._index._post
        sets = dict(post)
        sizes = {k: sys.getsizeof(v) for k, v in post.items()}
        copied = state._index.compact()
        assert copied > 0
        shrunk = [k for k in post if post[k] is not sets[k]]
        assert len(shrunk) == copied
        for k in shrunk:
            assert post[k] == sets[k] and sys.getsizeof(post[k]) < sizes[k]
            assert sizes[k] > index_module._SPARSE * len(sets[k])
        assert [state.containers(q) for q in queries] == before
        assert state._index.compact() == 0  # nothing sparse is left
    with patch.object(index_module.ContainerIndex, "compact") as spy:  # its first poll ends: ready
        state.poll_done("never", 0.01, PollFailure(NOW, HostStatus.DOWN, "refused"))
    assert state.is_ready() and spy.call_count == 1


def test_compaction_runs_as_gids_are_handed_out() -> None:
    state = FleetState(clock=Clock())
    for h in ("a", "never"):  # "never" is never polled: no FleetReady, no compaction for it
        state.add(HostSettings(name=h, url="tcp://127.0.0.1:1", interval=10.0, timeout=1.0))
    with patch.object(index_module, "_COMPACT_EVERY", 100), patch.object(
        index_module.ContainerIndex, "compact", autospec=True, side_effect=index_module.ContainerIndex.compact
    ) as spy:
        state._index._compact_at = 100
        poll(state, "a", tuple(container("a", f"c{n:03d}") for n in range(150)), NOW)
    assert spy.call_count == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_hosts_first_rows_posted_in_bulk_index_as_one_at_a_time(data: st.DataObject) -> None:
    """The bulk path of a host's first poll leaves the index exactly as posting its rows one by one."""
    from fleetd.fleet.changes import ContainerAdded
    from fleetd.fleet.index import ContainerIndex

    bulk, single = ContainerIndex(), ContainerIndex()
    for host in HOSTS:
        rows = data.draw(records(host))
        bulk.apply([ContainerAdded(host, c) for c in rows])
        for c in rows:
            single._put(host, c)
        bulk.sync(host, rows)
        single.sync(host, rows)
    assert bulk._next == single._next
    assert bulk._gids == single._gids and bulk._rec == single._rec
    assert bulk._post == single._post
    assert (bulk._images, bulk._image_ids, bulk._names_used, bulk._states, bulk._label_values) == (
        single._images, single._image_ids, single._names_used, single._states, single._label_values
    )
    assert sorted(bulk._names()[2]) == sorted(single._names()[2])  # the distinct names (any order)
    assert bulk._okey == single._okey and bulk._by_host == single._by_host
