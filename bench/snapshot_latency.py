"""Part 2 of ``bench.snapshot_bench``: API latency and polling freshness with and without a snapshot.

``bench.fake_fleet`` serves the fleet from a process of its own; ``fleetd run`` polls it with snapshots
on. Windows without snapshots alternate with windows of back-to-back ``POST /api/v1/snapshots``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.snapshot_stats import MIB, pct, summary_ms
from fleetd.util.timefmt import parse_rfc3339

__all__ = ["latency", "print_latency"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def sample_ages(http: aiohttp.ClientSession, base: str) -> list[float]:
    async with http.get(f"{base}/api/v1/hosts") as resp:
        hosts = (await resp.json())["hosts"]
    now = time.time()
    return [now - parse_rfc3339(h["last_seen"]) for h in hosts if h["state"] == "up" and h["last_seen"]]


@dataclass
class Samples:
    host_get: list[float] = field(default_factory=list)
    summary_get: list[float] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)
    snapshot_post: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "host_get": summary_ms(self.host_get),
            "summary_get": summary_ms(self.summary_get),
            "last_seen_age_s": {
                "p99": round(pct(self.ages, 0.99), 2),
                "max": round(max(self.ages, default=float("nan")), 2),
                "n": len(self.ages),
            },
            "snapshots_taken": len(self.snapshot_post),
            "snapshot_post": summary_ms(self.snapshot_post) if self.snapshot_post else None,
        }


async def latency_window(base: str, seconds: float, hosts: list[str], out: Samples, *, snapshots: bool) -> None:
    """Load for ``seconds``; with ``snapshots``, only what is sent while one is being taken counts."""
    taking = False
    stop_at = time.monotonic() + seconds
    rng = random.Random()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http, aiohttp.ClientSession(timeout=timeout) as post:

        async def load() -> None:
            while time.monotonic() < stop_at:
                for path, bucket in (
                    (f"/api/v1/hosts/{rng.choice(hosts)}", out.host_get),
                    ("/api/v1/summary", out.summary_get),
                ):
                    counted = taking == snapshots
                    t0 = time.perf_counter()
                    async with http.get(base + path) as resp:
                        await resp.read()
                        assert resp.status == 200, resp.status
                    if counted and taking == snapshots:
                        bucket.append(time.perf_counter() - t0)
                await asyncio.sleep(0.02)

        async def age_sampler() -> None:
            while time.monotonic() < stop_at:
                counted = taking == snapshots
                ages = await sample_ages(http, base)
                if counted:
                    out.ages.extend(ages)
                await asyncio.sleep(1.0)

        async def snapshotter() -> None:
            nonlocal taking
            while snapshots and time.monotonic() < stop_at:
                taking = True
                t0 = time.perf_counter()
                async with post.post(f"{base}/api/v1/snapshots") as resp:
                    assert resp.status == 201, await resp.text()
                out.snapshot_post.append(time.perf_counter() - t0)
                taking = False
                await asyncio.sleep(0.05)

        await asyncio.gather(load(), age_sampler(), snapshotter())


async def wait_all_up(base: str, hosts: int) -> None:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 180
        while True:
            try:
                async with http.get(f"{base}/api/v1/summary") as resp:
                    if resp.status == 200 and (await resp.json())["hosts"]["by_state"]["up"] == hosts:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("fleetd never saw every host up")
            await asyncio.sleep(0.5)


async def measure(args: argparse.Namespace, base: str, hosts: list[str]) -> dict[str, Any]:
    await wait_all_up(base, len(hosts))
    await asyncio.sleep(args.settle)  # the scheduled first snapshot, and polls spread out
    without, during = Samples(), Samples()
    for _ in range(args.rounds):  # alternated, so drift in the machine's load hits both alike
        await latency_window(base, args.window, hosts, without, snapshots=False)
        await latency_window(base, args.window, hosts, during, snapshots=True)
    return {"without_snapshot": without.report(), "during_snapshots": during.report()}


def _json_line(line: str) -> dict[str, Any] | None:
    """A "snapshot stored" event from fleetd's JSON log (lines may carry a journald <N> prefix)."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        event = json.loads(line[start:])
    except ValueError:
        return None
    return event if isinstance(event, dict) and event.get("event") == "snapshot stored" else None


def latency(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fleetd-snapbench-") as tmp:
        return _latency(args, Path(tmp))


def _latency(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port_file = workdir / "ports.txt"
    fleet = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_fleet", "--hosts", str(args.hosts), "--containers",
         str(args.containers), "--port-file", str(port_file)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    fleetd: subprocess.Popen[Any] | None = None
    try:
        assert fleet.stdout is not None
        line = fleet.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"fake fleet did not start: {line!r}")
        ports = [int(p) for p in port_file.read_text().split()]
        listen = free_port()
        config = workdir / "fleetd.yaml"
        hosts = [f"h{i:04d}" for i in range(len(ports))]
        config.write_text(
            f"listen: 127.0.0.1:{listen}\n"
            f"poll: {{interval: {args.interval}s, timeout: 5s}}\n"
            "log: {level: info, format: json}\n"
            "snapshots: {path: fleetd.db, interval: 24h}\n"
            "hosts:\n"
            + "".join(f"  - {{name: {n}, url: 'tcp://127.0.0.1:{p}'}}\n" for n, p in zip(hosts, ports, strict=True))
        )
        with (workdir / "fleetd.log").open("w") as log:
            fleetd = subprocess.Popen(
                [sys.executable, "-m", "fleetd", "run", "--config", str(config)],
                cwd=workdir, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        windows = asyncio.run(measure(args, f"http://127.0.0.1:{listen}", hosts))
        stored = [e for e in map(_json_line, (workdir / "fleetd.log").read_text().splitlines()) if e]
        return {
            "hosts": len(ports),
            "containers_per_host": args.containers,
            "poll_interval_s": args.interval,
            "window_s": args.window,
            "rounds": args.rounds,
            **windows,
            "db_mib_at_end": round((workdir / "fleetd.db").stat().st_size / MIB, 2),
            "capture_in_loop_ms": summary_ms([e["capture_ms"] / 1000 for e in stored]),
            "write_seconds": summary_ms([e["seconds"] for e in stored]),
        }
    finally:
        if fleetd is not None:
            stop(fleetd)
        stop(fleet)


def print_latency(r: dict[str, Any]) -> None:
    print(f"\nLatency: fleetd polling {r['hosts']} fake engines x {r['containers_per_host']} containers, "
          f"interval {r['poll_interval_s']} s, {r['window_s']} s per window")  # fmt: skip
    print(f"  {'':<26}{'GET host p50/p99/max ms':<28}{'GET summary p50/p99/max ms':<30}last_seen age p99/max s")
    for label, key in (("without snapshots", "without_snapshot"), ("during snapshots", "during_snapshots")):
        w = r[key]
        h, s, a = w["host_get"], w["summary_get"], w["last_seen_age_s"]
        print(
            f"  {label:<26}{h['p50_ms']}/{h['p99_ms']}/{h['max_ms']:<16}"
            f"{s['p50_ms']}/{s['p99_ms']}/{s['max_ms']:<18}{a['p99']}/{a['max']}"
        )
    d = r["during_snapshots"]
    if d["snapshot_post"]:
        p = d["snapshot_post"]
        print(f"  snapshots taken: {d['snapshots_taken']}, POST p50 {p['p50_ms']} ms, max {p['max_ms']} ms")
    print(f"  requests counted: {r['without_snapshot']['host_get']['n']} / {d['host_get']['n']} (host GETs)")
    c, w = r["capture_in_loop_ms"], r["write_seconds"]
    print(f"  fleetd's log: capture in the loop p50 {c['p50_ms']} ms, max {c['max_ms']} ms;"
          f" write p50 {w['p50_ms']} ms, max {w['max_ms']} ms")  # fmt: skip
