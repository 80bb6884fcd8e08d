"""Filtered container queries at a steady rate while fleetd polls a simulated fleet: latency and freshness.

    python -m bench.query_load --hosts 1000 --containers 40 --rate 200 --duration 30

Starts ``bench.fake_fleet`` and ``fleetd run`` as processes (as ``bench.fleet_bench`` does), waits for the
complete view, then sends a mix of filtered ``/api/v1/containers`` queries (label, label + state, name,
image, health, host label; ``limit=100``) at ``--rate`` per second for ``--duration`` seconds from one
aiohttp client. Latency is measured from each request's *scheduled* send time, so a slow answer that
delays the next ones is counted against them too (no coordinated omission). During the run,
``/api/v1/hosts`` is read every 2 s: the age of each healthy host's ``last_seen`` against the interval.
A baseline in the same run: the same mix at the same rate against ``/healthz`` (the listener's floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.fleet_bench import PYTHON, Api, fake_fleet, free_port, stop, wait_complete, write_config

QUERIES = (
    "/api/v1/containers?label=app=web&limit=100",
    "/api/v1/containers?label=app=web&state=running&limit=100",
    "/api/v1/containers?label=com.docker.compose.project=shop&health=healthy&limit=100",
    "/api/v1/containers?name=worker-1&limit=100",
    "/api/v1/containers?image=redis&state=exited&limit=100",
    "/api/v1/containers?state=running&limit=100&offset=5000",
)


async def load(port: int, paths: tuple[str, ...], rate: float, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    n = int(rate * duration)
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as http:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.2

        async def one(i: int) -> None:
            nonlocal errors
            at = t0 + i / rate
            await asyncio.sleep(max(0.0, at - loop.time()))
            try:
                async with http.get(f"http://127.0.0.1:{port}{paths[i % len(paths)]}") as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(loop.time() - at)

        await asyncio.gather(*(one(i) for i in range(n)))
    latencies.sort()
    return {
        "requests": n,
        "errors": errors,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


async def ages(port: int, interval: float, duration: float) -> dict[str, Any]:
    worst = 0.0
    async with aiohttp.ClientSession() as http:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            async with http.get(f"http://127.0.0.1:{port}/api/v1/hosts?state=up") as resp:
                hosts = (await resp.json())["hosts"]
            now = time.time()
            for h in hosts:
                if h["last_seen"]:
                    seen = time.mktime(time.strptime(h["last_seen"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
                    worst = max(worst, now - seen)
            await asyncio.sleep(2.0)
    return {"max_last_seen_age_s": round(worst, 1), "interval_s": interval}


async def measure(port: int, args: argparse.Namespace) -> dict[str, Any]:
    base = await load(port, ("/healthz",), args.rate, min(args.duration, 10.0))
    fresh_task = asyncio.create_task(ages(port, args.interval, args.duration))
    queries = await load(port, QUERIES, args.rate, args.duration)
    return {"baseline_healthz": base, "queries": queries, "freshness": await fresh_task}


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
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetd-qload-") as tmp:
        workdir = Path(tmp)
        with fake_fleet(args, workdir) as fleet:
            listen = free_port()
            config = workdir / "fleetd.yaml"
            write_config(config, args, fleet.ports, listen)
            import subprocess

            log = open(workdir / "fleetd.log", "w")  # noqa: SIM115 - closed below
            started = time.monotonic()
            proc = subprocess.Popen(
                [str(Path(PYTHON).parent / "fleetd"), "run", "--config", str(config)], stdout=log, stderr=log
            )
            try:
                wait_complete(Api(listen), proc, started, args.hosts - fleet.hanging, args.hosts, 0.1)
                time.sleep(3.0)
                result = asyncio.run(measure(listen, args))
            finally:
                stop(proc)
                log.close()
    result["args"] = vars(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
