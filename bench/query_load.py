"""Filtered container queries at a steady rate while fleetd polls a simulated fleet: latency and freshness.

    python -m bench.query_load --hosts 1000 --containers 40 --rate 200 --duration 15 --interval 30

Starts ``bench.fake_fleet`` and ``fleetd run`` as processes (as ``bench.fleet_bench`` does), waits for the
complete view, then sends a mix of filtered ``/api/v1/containers`` queries (label, label + state, name,
image, health, a deep offset; ``limit=100``) at ``--rate`` per second for ``--duration`` seconds.
Latency is measured from each request's *scheduled* send time, so a slow answer that delays the next
ones is counted against them too (no coordinated omission). During the run, ``/api/v1/hosts`` is read
every ``--ages-every`` seconds: the age of each healthy host's ``last_seen`` against the interval. A baseline in the same
run: ``/healthz`` at the same rate (the listener's floor), before the queries.

The load generator is a raw asyncio HTTP/1.1 client over ``--connections`` keep-alive connections (one
request at a time on each, no pipelining): it costs a fraction of an aiohttp client's CPU per request,
so on a small machine it does not take the core fleetd needs. Reported per phase: the generator's own
CPU share and fleetd's (``/proc``), the load average before and after. ``--profile PATH`` records fleetd
with py-spy (installed in the bench's environment) during the query phase (``--profile-format``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet_bench import (
    PYTHON,
    Api,
    cpu_seconds,
    fake_fleet,
    free_port,
    stop,
    wait_complete,
    write_config,
)
from fleetd.util.timefmt import parse_rfc3339

QUERIES = (
    "/api/v1/containers?label=app=web&limit=100",
    "/api/v1/containers?label=app=web&state=running&limit=100",
    "/api/v1/containers?label=com.docker.compose.project=shop&health=healthy&limit=100",
    "/api/v1/containers?name=worker-1&limit=100",
    "/api/v1/containers?image=redis&state=exited&limit=100",
    "/api/v1/containers?state=running&limit=100&offset=5000",
)


class Conn:
    """One keep-alive HTTP/1.1 connection: a GET at a time, Content-Length bodies (what fleetd sends)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise RuntimeError("chunked answers are not expected here")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Phase:
    """CPU of this process and of fleetd, and the load average, across one phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.wall, self.own, self.fleetd = time.monotonic(), time.process_time(), cpu_seconds(pid)
        self.load_before = os.getloadavg()[0]

    def done(self) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        return {
            "loadgen_cpu_pct": round(100 * (time.process_time() - self.own) / wall, 1),
            "fleetd_cpu_pct": round(100 * (cpu_seconds(self.pid) - self.fleetd) / wall, 1),
            "load_avg_before": self.load_before,
            "load_avg_after": os.getloadavg()[0],
        }


async def load(port: int, pid: int, paths: tuple[str, ...], rate: float, duration: float, conns: int) -> dict[str, Any]:
    n = int(rate * duration)
    per_path: dict[str, list[float]] = {p: [] for p in paths}
    errors = 0
    pool = [await Conn.open(port) for _ in range(conns)]
    queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def worker(slot: int) -> None:
        nonlocal errors
        while (item := await queue.get()) is not None:
            at, path = item
            try:
                status, _ = await pool[slot].get(path)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
                pool[slot].close()
                pool[slot] = await Conn.open(port)
            if status != 200:
                errors += 1
            per_path[path].append(loop.time() - at)

    phase = Phase(pid)
    workers = [asyncio.create_task(worker(i)) for i in range(len(pool))]
    t0 = loop.time() + 0.1
    for i in range(n):
        at = t0 + i / rate
        if (wait := at - loop.time()) > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((at, paths[i % len(paths)]))
    for _ in pool:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    for c in pool:
        c.close()
    cpu = phase.done()
    every = sorted(x for v in per_path.values() for x in v)
    return {
        "requests": n,
        "errors": errors,
        "p50_ms": round(statistics.median(every) * 1000, 1),
        "p99_ms": round(every[max(0, int(len(every) * 0.99) - 1)] * 1000, 1),
        "max_ms": round(every[-1] * 1000, 1),
        **cpu,
        "per_query_p50_p99_ms": {
            p: [round(statistics.median(v) * 1000, 1), round(sorted(v)[max(0, int(len(v) * 0.99) - 1)] * 1000, 1)]
            for p, v in per_path.items()
            if len(paths) > 1
        },
    }


async def ages(port: int, interval: float, duration: float, every: float) -> dict[str, Any]:
    """Every ``every`` seconds, the age of each healthy host's ``last_seen``: the worst, and the 99th
    percentile. Each read lists every host (about 40 ms of fleetd's loop for 1,000 hosts here), so it
    delays the queries behind it too: the more often, the more it weighs on their p99."""
    seen_ages: list[float] = []
    conn = await Conn.open(port)
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            _, body = await conn.get("/api/v1/hosts?state=up")
            now = time.time()
            seen_ages.extend(now - parse_rfc3339(h["last_seen"]) for h in json.loads(body)["hosts"] if h["last_seen"])
            await asyncio.sleep(every)
    finally:
        conn.close()
    seen_ages.sort()
    return {
        "max_last_seen_age_s": round(seen_ages[-1], 2) if seen_ages else None,
        "p99_last_seen_age_s": round(seen_ages[int(len(seen_ages) * 0.99) - 1], 2) if seen_ages else None,
        "interval_s": interval,
    }


async def single(port: int, paths: tuple[str, ...], repeat: int = 15) -> dict[str, float]:
    """Each query alone, ``repeat`` times one after another: the median milliseconds, HTTP included."""
    conn = await Conn.open(port)
    out: dict[str, float] = {}
    try:
        for path in paths:
            took = []
            for _ in range(repeat):
                started = time.perf_counter()
                await conn.get(path)
                took.append(time.perf_counter() - started)
            out[path] = round(statistics.median(took) * 1000, 2)
    finally:
        conn.close()
    return out


def spy(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes] | None:
    if not args.profile:
        return None
    exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    cmd = [exe, "record", "-r", "100", "-f", args.profile_format, "-d", str(int(args.duration)), "-o", args.profile, "--pid", str(pid)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def measure(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    alone = await single(port, (*QUERIES, "/api/v1/containers?limit=100", "/api/v1/summary", "/api/v1/hosts?state=up", "/healthz"))
    base = await load(port, pid, ("/healthz",), args.rate, min(args.duration, 10.0), args.connections)
    fresh_task = asyncio.create_task(ages(port, args.interval, args.duration, args.ages_every))
    profiler = spy(args, pid)
    queries = await load(port, pid, QUERIES, args.rate, args.duration, args.connections)
    if profiler is not None:
        profiler.wait()
    return {"single_ms": alone, "baseline_healthz": base, "queries": queries, "freshness": await fresh_task}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--hang-fraction", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--ages-every", type=float, default=5.0, help="seconds between reads of /api/v1/hosts")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections of the load generator")
    p.add_argument("--profile", default="", help="py-spy output file for the query phase (empty: none)")
    p.add_argument("--profile-format", default="raw", choices=("raw", "flamegraph", "speedscope"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetd-qload-") as tmp:
        workdir = Path(tmp)
        with fake_fleet(args, workdir) as fleet:
            listen = free_port()
            config = workdir / "fleetd.yaml"
            write_config(config, args, fleet.ports, listen)
            log = open(workdir / "fleetd.log", "w")  # noqa: SIM115 - closed below
            started = time.monotonic()
            proc = subprocess.Popen(
                [str(Path(PYTHON).parent / "fleetd"), "run", "--config", str(config)], stdout=log, stderr=log
            )
            try:
                wait_complete(Api(listen), proc, started, args.hosts - fleet.hanging, args.hosts, 0.1)
                time.sleep(3.0)
                result = asyncio.run(measure(listen, proc.pid, args))
            finally:
                stop(proc)
                log.close()
    result["args"] = vars(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
