"""CPU per fleet-wide container query: the indexed FleetState against a full scan, in one run.

    python -m bench.query_bench --hosts 1000 --containers 40 --repeat 20

Builds a fleet in memory through the state's writer (one poll per host), then times each query of a
mix (label, label + state, name substring, image repository, health, unfiltered page) answered by
``FleetState.containers`` (the indexes) and by a scan testing every predicate on every record (what
the state did before the indexes, kept here as the baseline). Both run alternately in the same
process; the table gives the median per query and the ratio. The ``+churn`` columns add writes: before
each query, ``--churn`` hosts are re-polled with one container changed, so the index's upkeep is paid
too and the selections it keeps between writes are computed afresh. ``page 100`` is what
``GET /api/v1/containers?...&limit=100`` costs in the state (the page and the total).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time
from collections.abc import Callable
from fnmatch import fnmatchcase

import msgspec

from fleetd.config.model import HostSettings
from fleetd.fleet.match import container_image_matches, label_matches
from fleetd.fleet.records import ContainerRecord, EngineFacts, diff_containers
from fleetd.fleet.state import ContainerQuery, FleetState, PollSuccess

FACTS = EngineFacts("E", "n", "27.5.1", "1.47", "Debian", "linux", "6.1", "x86_64", 4, 1 << 33, "overlay2")
APPS = ["web", "api", "worker", "db", "cache", "batch", "proxy", "queue"]
STATES = ["running"] * 8 + ["exited", "paused"]


def make(host: str, i: int, rng: random.Random) -> ContainerRecord:
    app = APPS[i % len(APPS)]
    name = f"{app}-{i}"
    return ContainerRecord(
        host=host,
        id=hashlib.sha256(f"{host}/{name}".encode()).hexdigest(),
        name=name,
        names=[name],
        image=f"registry.local/{app}:{rng.randint(1, 3)}",
        image_id="sha256:" + hashlib.sha256(app.encode()).hexdigest(),
        command="run",
        state=rng.choice(STATES),
        status="Up 3 hours",
        health=rng.choice(["none", "none", "healthy", "unhealthy"]),
        created="2026-11-01T00:00:00Z",
        labels={"app": app, "env": rng.choice(["prod", "staging"]), "team": f"t{i % 5}"},
        ports=[],
        observed_at=None,
    )


def scan(state: FleetState, query: ContainerQuery) -> list[ContainerRecord]:
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


QUERIES = {
    "label app=web": ContainerQuery(labels=("app=web",)),
    "label + state": ContainerQuery(labels=("app=web",), state="running"),
    "two labels + health": ContainerQuery(labels=("env=prod", "team=t1"), health="unhealthy"),
    "name glob": ContainerQuery(name="worker-1*"),
    "exact name": ContainerQuery(name="worker-10"),
    "image repository": ContainerQuery(image="registry.local/db"),
    "one host, state": ContainerQuery(hosts=("h0007",), state="exited"),
    "no filter": ContainerQuery(),
}


def median_us(fn: Callable[[], object], repeat: int, before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--containers", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--churn", type=int, default=5, help="hosts re-polled (one change each) before a query")
    args = ap.parse_args()
    rng = random.Random(7)
    now = time.time()
    state = FleetState()
    hosts = [f"h{i:04d}" for i in range(args.hosts)]
    for n, h in enumerate(hosts):
        state.add(HostSettings(name=h, url=f"tcp://127.0.0.1:{20000 + n}", interval=30.0, timeout=5.0))
        rows = tuple(sorted((make(h, i, rng) for i in range(args.containers)), key=lambda c: c.name))
        state.poll_done(h, 0.01, PollSuccess(now, FACTS, msgspec.Raw(b"{}"), rows, diff_containers((), rows)))

    def churn() -> None:
        for h in rng.sample(hosts, args.churn):
            record = state.get(h)
            assert record is not None
            rows = list(record.containers)
            k = rng.randrange(len(rows))
            rows[k] = msgspec.structs.replace(rows[k], state=rng.choice(STATES), observed_at=None)
            new = tuple(rows)
            diff = diff_containers(record.containers, new)
            state.poll_done(h, 0.01, PollSuccess(time.time(), FACTS, msgspec.Raw(b"{}"), new, diff))

    print(f"{args.hosts} hosts x {args.containers} containers, median of {args.repeat} per query (µs)")
    print(f"{'query':<22}{'matches':>8}{'scan':>10}{'indexed':>10}{'ratio':>8}{'+churn':>10}{'page 100':>10}{'+churn':>10}")
    for label, q in QUERIES.items():
        assert state.containers(q) == scan(state, q), label
        base = median_us(lambda q=q: scan(state, q), args.repeat)  # type: ignore[misc]
        fast = median_us(lambda q=q: state.containers(q), args.repeat)  # type: ignore[misc]
        with_churn = median_us(lambda q=q: state.containers(q), args.repeat, churn)  # type: ignore[misc]
        page = median_us(lambda q=q: state.containers_page(q, 0, 100), args.repeat)  # type: ignore[misc]
        page_churn = median_us(lambda q=q: state.containers_page(q, 0, 100), args.repeat, churn)  # type: ignore[misc]
        n = len(state.containers(q))
        print(
            f"{label:<22}{n:>8}{base:>10.0f}{fast:>10.0f}{base / fast:>7.1f}x{with_churn:>10.0f}{page:>10.0f}{page_churn:>10.0f}"
        )


if __name__ == "__main__":
    main()
