"""What a Prometheus scrape of ``/metrics`` costs fleetd's event loop, by fleet size, in one run.

    python -m bench.metrics_bench --hosts 1000,3000,10000 --repeat 5

Builds a fleet in memory through the state's writer (one poll per host, 40 containers each), then
freezes what it built for the garbage collector (as fleetd does once ready), then
renders the per-host families both ways, alternately in the same process: the way fleetd did before
(a prometheus_client ``Collector`` of ``GaugeMetricFamily`` objects through ``generate_latest``, kept
here as the baseline) and :class:`fleetd.metrics.HostFamilies`. Reported per size: the median CPU of
one render, and the longest the event loop went without running anything else during it, in CPU
time (a 1 ms ticker runs beside the render; the baseline is one synchronous call, so its stall is its
whole time).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Iterator

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bench.query_bench import FACTS, make
from fleetd.config.model import HostSettings
from fleetd.fleet.records import HostStatus, diff_containers
from fleetd.fleet.state import FleetState, PollSuccess
from fleetd.metrics import HostFamilies, bounded_states


class BaselineCollector(Collector):
    """The per-host collector fleetd had before HostFamilies (same families, same samples)."""

    def __init__(self, state: FleetState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        now = self._state.clock()
        fams = {
            k: GaugeMetricFamily(f"fleetd_host_{k}", k, labels=["host"])
            for k in ("up", "stale", "last_success_timestamp_seconds", "consecutive_failures",
                      "last_poll_duration_seconds", "duplicate_engine_id")
        }
        st = GaugeMetricFamily("fleetd_host_state", "state", labels=["host", "state"])
        cont = GaugeMetricFamily("fleetd_host_containers", "containers", labels=["host", "state"])
        overdue = CounterMetricFamily("fleetd_host_polls_overdue", "overdue", labels=["host"])
        duplicates = {n for names in self._state.duplicate_engine_ids().values() for n in names}
        for r in self._state.sorted_records():
            name = r.name
            fams["up"].add_metric([name], 1.0 if r.status is HostStatus.UP else 0.0)
            for s in HostStatus:
                st.add_metric([name, s.value], 1.0 if r.status is s else 0.0)
            fams["stale"].add_metric([name], 1.0 if r.is_stale(now) else 0.0)
            if r.last_seen is not None:
                fams["last_success_timestamp_seconds"].add_metric([name], r.last_seen)
            fams["consecutive_failures"].add_metric([name], float(r.consecutive_failures))
            overdue.add_metric([name], float(r.polls_overdue))
            if r.poll_duration is not None:
                fams["last_poll_duration_seconds"].add_metric([name], r.poll_duration)
            fams["duplicate_engine_id"].add_metric([name], 1.0 if name in duplicates else 0.0)
            for cstate, n in sorted(bounded_states(r.tally().by_state).items()):
                cont.add_metric([name, cstate], float(n))
        yield from (*fams.values(), st, overdue, cont)


def build(hosts: int, containers: int) -> FleetState:
    rng = random.Random(7)
    state = FleetState()
    now = time.time()
    for n in range(hosts):
        h = f"h{n:05d}"
        state.add(HostSettings(name=h, url=f"tcp://127.0.0.1:{20000 + n % 40000}", interval=30.0, timeout=5.0))
        rows = tuple(make(h, i, rng) for i in range(containers))
        state.poll_done(h, 0.01, PollSuccess(now, FACTS, msgspec.Raw(b"{}"), rows, diff_containers((), rows)))
    return state


async def _timed(render: object) -> tuple[float, float, int]:
    """(CPU seconds, longest loop stall in seconds, bytes) of one render run beside a 1 ms ticker."""
    stop = False
    longest = 0.0

    async def tick() -> None:
        nonlocal longest
        last = time.thread_time()  # CPU of this thread: a stall is work, not time the machine took away
        while not stop:
            await asyncio.sleep(0.001)
            t = time.thread_time()
            longest = max(longest, t - last)
            last = t

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.005)
    longest = 0.0
    cpu = time.process_time()
    body = await render()  # type: ignore[operator]
    cpu = time.process_time() - cpu
    await asyncio.sleep(0.003)
    stop = True
    await ticker
    return cpu, longest, len(body)


async def run(sizes: list[int], containers: int, repeat: int) -> None:
    print(f"{'hosts':>7} | {'before: CPU':>12} {'stall':>8} | {'HostFamilies: CPU':>18} {'stall':>8} | CPU ratio")
    for hosts in sizes:
        state = build(hosts, containers)
        gc.collect()
        gc.freeze()  # as fleetd does once the fleet is ready (fleetd/service/gcpolicy.py)
        registry = CollectorRegistry()
        registry.register(BaselineCollector(state))
        families = HostFamilies(state)

        async def before(registry: CollectorRegistry = registry) -> bytes:
            return generate_latest(registry)

        async def after(families: HostFamilies = families) -> bytes:
            return await families.render()

        old: list[tuple[float, float, int]] = []
        new: list[tuple[float, float, int]] = []
        for _ in range(repeat):
            old.append(await _timed(before))
            new.append(await _timed(after))
        oc = statistics.median(x[0] for x in old)
        nc = statistics.median(x[0] for x in new)
        os_ = statistics.median(x[1] for x in old)
        ns = statistics.median(x[1] for x in new)
        print(
            f"{hosts:>7} | {oc * 1000:>9.1f} ms {os_ * 1000:>5.1f} ms | {nc * 1000:>15.1f} ms {ns * 1000:>5.1f} ms"
            f" | {oc / nc:>5.2f}x  ({new[0][2] / 1e6:.1f} MB)"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", default="1000,3000,10000", help="comma-separated fleet sizes")
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    asyncio.run(run([int(x) for x in args.hosts.split(",")], args.containers, args.repeat))


if __name__ == "__main__":
    main()
