"""Snapshot storage growth and the effect of taking a snapshot on polling and on API answers.

Run from the repository root::

    python -m bench.snapshot_bench                        # both parts, 1,000 hosts x 40 containers
    python -m bench.snapshot_bench --part storage --snapshots 100
    python -m bench.snapshot_bench --part latency --rounds 4

1. **Storage** (in-process, no network): a FleetState filled directly with 1,000 hosts x 40 containers,
   one snapshot, then ``--snapshots`` more of the unchanged fleet, each after a simulated poll (new
   ``observed_at``/``last_seen`` and status text "Up N hours"). Reports the database after the first
   snapshot and what the next ones added (file size after a WAL checkpoint), the time per snapshot, and
   the event loop's lag measured by a 1 ms ticker while snapshots are taken versus idle.
2. **Latency** (processes): ``bench.fake_fleet`` serves 1,000 fake Engines; ``fleetd run`` polls them
   (interval ``--interval``) with snapshots on. ``--rounds`` times, ``--window`` seconds without
   snapshots, then ``--window`` seconds of back-to-back ``POST /api/v1/snapshots``: the latency of
   ``GET /api/v1/hosts/{name}`` and ``GET /api/v1/summary`` requests (p50/p99/max, split by whether a
   snapshot was being taken when the request was sent), and the age of healthy hosts' ``last_seen``
   sampled from ``GET /api/v1/hosts`` every second (p99/max), against the poll interval.

Results: a table on stdout and ``bench/results/snapshots-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from bench.snapshot_latency import latency, print_latency
from bench.snapshot_stats import MIB, pct, summary_ms
from fleetd.config.model import HostSettings
from fleetd.fleet.records import ContainerRecord, EngineFacts, PortRecord
from fleetd.fleet.state import FleetState
from fleetd.snapshot import model as snapshot_model
from fleetd.snapshot.model import Trigger, capture_fleet
from fleetd.store import Database, SnapshotStore
from fleetd.util.timefmt import rfc3339
from tests.writes import poll_ok

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


# -- part 1: storage ------------------------------------------------------------------------------

_IMAGES = ("nginx:1.27", "redis:7.4", "postgres:16", "traefik:v3.1", "registry.example.internal/shop/api:2.3.1")


def synthetic_fleet(hosts: int, containers: int, now: float) -> FleetState:
    state = FleetState(clock=lambda: now)
    rng = random.Random(1)
    for i in range(hosts):
        name = f"node{i:04d}"
        state.add(
            HostSettings(name=name, url=f"tcp://10.{i // 250}.{i % 250}.1:2376", labels={"rack": f"r{i % 20}"})
        )
        facts = EngineFacts(
            engine_id=hashlib.sha256(name.encode()).hexdigest()[:36], name=name, server_version="27.5.1",
            api_version="1.47", operating_system="Debian GNU/Linux 12 (bookworm)", os_type="linux",
            kernel_version="6.1.0-28-amd64", architecture="x86_64", ncpu=8, mem_total=32 * 1024**3,
            storage_driver="overlay2",
        )  # fmt: skip
        records = []
        for j in range(containers):
            project, service = f"proj{j % 7}", f"svc{j}"
            image = _IMAGES[rng.randrange(len(_IMAGES))]
            records.append(
                ContainerRecord(
                    host=name, id=hashlib.sha256(f"{name}/{j}".encode()).hexdigest(), name=f"{project}-{service}-1",
                    names=[f"{project}-{service}-1"], image=image,
                    image_id="sha256:" + hashlib.sha256(image.encode()).hexdigest(),
                    command="docker-entrypoint.sh server --config /etc/app/config.yaml",
                    state="running", status=f"Up {rng.randint(2, 20)} hours", health="healthy" if j % 3 else "none",
                    created="2025-11-01T08:00:00Z",
                    labels={
                        "com.docker.compose.project": project, "com.docker.compose.service": service,
                        "com.docker.compose.version": "2.29.7", "com.docker.compose.container-number": "1",
                        "org.opencontainers.image.source": "https://example.internal/" + service, "team": "ops",
                    },
                    ports=[PortRecord(private_port=8080, type="tcp", ip="0.0.0.0", public_port=20000 + j)],
                    observed_at=rfc3339(now),
                )
            )  # fmt: skip
        poll_ok(state, name, sorted(records, key=lambda c: c.name), at=now, facts=facts)  # as the poller writes
    return state


def repoll(state: FleetState, now: float, step: int) -> None:
    """What a poll of an unchanged fleet changes: new records, observed_at, last_seen, status text."""
    for r in state.records():
        status = f"Up {3 + step} hours"
        rows = [msgspec.structs.replace(c, observed_at=rfc3339(now), status=status) for c in r.containers]
        poll_ok(state, r.name, rows, at=now, facts=r.facts)


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class LoopLag:
    """A 1 ms ticker: how late the event loop wakes it (what a blocking call would show).

    Only ticks that start while ``active`` is set are kept, so the bench's own work in the loop
    (simulating polls between snapshots) is not counted against the snapshot.
    """

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.active = True
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            counted = self.active
            t0 = loop.time()
            await asyncio.sleep(0.001)
            if counted and self.active:
                self.samples.append(loop.time() - t0 - 0.001)

    @asynccontextmanager
    async def measuring(self) -> AsyncIterator[list[float]]:
        self.samples = []
        self._task = asyncio.create_task(self._run())
        try:
            yield self.samples
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def storage(args: argparse.Namespace) -> dict[str, Any]:
    now = time.time()
    state = synthetic_fleet(args.hosts, args.containers, now)
    with tempfile.TemporaryDirectory(prefix="fleetd-snapbench-") as tmp:
        path = Path(tmp) / "fleetd.db"
        async with Database(path) as db:
            store = SnapshotStore(db)

            async def checkpointed_size() -> int:
                await db.run(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
                return await asyncio.to_thread(file_size, path)

            lag = LoopLag()
            async with lag.measuring() as idle_lag:
                await asyncio.sleep(2.0)
            t0 = time.perf_counter()
            await store.save(capture_fleet(state, Trigger.SCHEDULE))
            first_seconds = time.perf_counter() - t0
            first_size = await checkpointed_size()
            durations: list[float] = []
            captures: list[float] = []
            capture_cpu: list[float] = []
            wal_max = 0
            async with lag.measuring() as busy_lag:
                for step in range(1, args.snapshots + 1):
                    lag.active = False
                    now += args.every
                    repoll(state, now, step)  # the bench's stand-in for polls: not the snapshot's cost
                    gc.collect()  # and the garbage it made is collected now, not during the snapshot
                    await asyncio.sleep(0.01)  # let the ticker see the loop free again
                    lag.active = True
                    t0, c0 = time.perf_counter(), time.thread_time()
                    capture = capture_fleet(state, Trigger.SCHEDULE)
                    captures.append(time.perf_counter() - t0)
                    capture_cpu.append(time.thread_time() - c0)
                    await store.save(capture)
                    durations.append(time.perf_counter() - t0)
                    wal_max = max(wal_max, await asyncio.to_thread(file_size, Path(f"{path}-wal")))
            final_size = await checkpointed_size()
            versions, rows = await db.read(
                lambda c: (
                    c.execute("SELECT count(*) FROM host_versions").fetchone()[0],
                    c.execute("SELECT count(*) FROM snapshot_hosts").fetchone()[0],
                )
            )
            t0 = time.perf_counter()
            await store.get(args.snapshots + 1)
            load_seconds = time.perf_counter() - t0
    return {
        "hosts": args.hosts,
        "containers_per_host": args.containers,
        "snapshots_after_first": args.snapshots,
        "first_snapshot_mib": round(first_size / MIB, 3),
        "first_snapshot_seconds": round(first_seconds, 3),
        "growth_mib": round((final_size - first_size) / MIB, 3),
        "growth_per_snapshot_kib": round((final_size - first_size) / args.snapshots / 1024, 1),
        "wal_max_mib": round(wal_max / MIB, 2),
        "host_versions": versions,
        "snapshot_host_rows": rows,
        "snapshot_seconds": {
            "median": round(statistics.median(durations), 3),
            "p95": round(pct(durations, 0.95), 3),
            "max": round(max(durations), 3),
        },
        "capture_in_loop_ms": summary_ms(captures),
        "capture_in_loop_cpu_ms": summary_ms(capture_cpu),
        "loop_lag_idle": summary_ms(idle_lag),
        "loop_lag_while_snapshotting": summary_ms(busy_lag),
        "load_full_snapshot_seconds": round(load_seconds, 3),
    }


# -- output -------------------------------------------------------------------------------------------


def print_storage(r: dict[str, Any]) -> None:
    print(f"\nStorage: {r['hosts']} hosts x {r['containers_per_host']} containers")
    print(f"  first snapshot            {r['first_snapshot_mib']:.2f} MiB in {r['first_snapshot_seconds']:.2f} s")
    print(
        f"  +{r['snapshots_after_first']} unchanged snapshots   +{r['growth_mib']:.2f} MiB"
        f" ({r['growth_per_snapshot_kib']} KiB each); host versions {r['host_versions']},"
        f" rows {r['snapshot_host_rows']}; WAL peak {r['wal_max_mib']} MiB"
    )
    s = r["snapshot_seconds"]
    print(f"  time per snapshot         median {s['median']} s, p95 {s['p95']} s, max {s['max']} s")
    c, cpu = r["capture_in_loop_ms"], r["capture_in_loop_cpu_ms"]
    print(
        f"  capture in the loop       wall p50 {c['p50_ms']} ms, max {c['max_ms']} ms;"
        f" CPU p50 {cpu['p50_ms']} ms, max {cpu['max_ms']} ms"
    )
    for label, key in (("loop lag idle", "loop_lag_idle"), ("loop lag snapshotting", "loop_lag_while_snapshotting")):
        lag = r[key]
        print(f"  {label:<25} p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms")
    print(f"  load one full snapshot    {r['load_full_snapshot_seconds']} s")

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshot_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("storage", "latency", "both"), default="both")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--snapshots", type=int, default=100, help="unchanged snapshots after the first")
    parser.add_argument("--every", type=float, default=300.0, help="simulated seconds between snapshots")
    parser.add_argument(
        "--yield-every",
        type=float,
        help="storage part: override fleetd.snapshot.model.YIELD_EVERY (0: after every host, 1e9: never)",
    )
    parser.add_argument("--interval", type=float, default=15.0, help="fleetd's poll interval (latency part)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per latency window")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of windows (without, during)")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds between all-up and measuring")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"started": rfc3339(time.time()), "cpus": os.cpu_count(), "args": vars(args)}
    if args.part in ("storage", "both"):
        if args.yield_every is not None:
            setattr(snapshot_model, "YIELD_EVERY", args.yield_every)  # noqa: B010 - a Final, on purpose
            if args.yield_every == 0:
                setattr(snapshot_model, "YIELD_FOR", 0.0)  # noqa: B010 - time.sleep(0) after every host
        results["storage"] = asyncio.run(storage(args))
        print_storage(results["storage"])
    if args.part in ("latency", "both"):
        results["latency"] = latency(args)
        print_latency(results["latency"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"snapshots-{time.strftime('%Y%m%dT%H%M%S')}-{args.part}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
