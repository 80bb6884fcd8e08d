"""10,000 simulated hosts on one fleetd: complete view, CPU share, memory, file descriptors, API latency.

    python -m bench.scale_bench --hosts 10000 --fleets 5 --interval 30 --window 60 --rate 100

Starts ``--fleets`` ``bench.fake_fleet`` processes (``--hosts`` split between them, each with its own
seed, so every engine has its own ID), writes one fleetd config for all their ports and runs
``fleetd run``. Measured: wall time from exec to the first ``/api/v1/summary`` with every host ``up``;
after ``--settle`` seconds, over ``--window`` seconds: fleetd's CPU share (utime + stime / wall),
CPU ms per poll, VmRSS per host, open file descriptors; and, during the same window, API requests at
``--rate`` per second (a mix of ``/api/v1/summary``, ``/api/v1/hosts?limit=100``,
``/api/v1/containers?limit=100`` and filtered container queries), latency taken from each request's
*scheduled* time (no coordinated omission): p50, p99, max. Beside the mix, ``/healthz`` at ``--probe-rate``
per second: the time it takes is how long a request waits for fleetd's event loop (its lag), whatever
the handlers cost. After the window: the age of every healthy host's ``last_seen`` (are polls keeping
up?). ``--profile`` records fleetd with py-spy over the window (``--nonblocking``: sampling does not stop
fleetd, so the latencies stay honest; raw collapsed stacks in bench/results/).

File descriptors: 10,000 hosts with Engine events on would need a stream and a liveness connection
per host on top of the polls, more than the machine's 20,000 open files, so ``--events`` defaults to
false here; fleetd itself keeps one poll connection per host when two would not fit (see
``fleetd.fleet.poller``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.fleet_bench import (
    PYTHON,
    RESULTS,
    ROOT,
    Api,
    cpu_seconds,
    free_port,
    open_fds,
    status_kib,
    stop,
    wait_complete,
)
from fleetd.util.timefmt import parse_rfc3339

__all__ = ["main"]

MIX = (
    "/api/v1/summary",
    "/api/v1/hosts?limit=100",
    "/api/v1/containers?limit=100",
    "/api/v1/containers?label=app=web&limit=100",
    "/api/v1/containers?state=exited&limit=100",
)


def start_fleets(args: argparse.Namespace, work: Path) -> tuple[list[subprocess.Popen[str]], list[int]]:
    procs: list[subprocess.Popen[str]] = []
    ports: list[int] = []
    share = [args.hosts // args.fleets + (i < args.hosts % args.fleets) for i in range(args.fleets)]
    files = []
    for i, n in enumerate(share):
        pf = work / f"ports-{i}.txt"
        cmd = [PYTHON, "-m", "bench.fake_fleet", "--hosts", str(n), "--containers", str(args.containers),
               "--latency", str(args.latency), "--seed", str(i + 1), "--port-file", str(pf)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True))
        files.append(pf)
    for proc, pf in zip(procs, files, strict=True):
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"fake fleet did not start: {line!r}")
        ports += [int(p) for p in pf.read_text().split()]
    return procs, ports


def write_config(path: Path, args: argparse.Namespace, ports: list[int], listen: int) -> None:
    lines = [
        f"listen: 127.0.0.1:{listen}",
        "poll:",
        f"  interval: {args.interval:g}s",
        f"  timeout: {args.timeout:g}s",
        f"  concurrency: {args.concurrency}",
        "snapshots: {enabled: false}",
        "auth: {anonymous_read: true}",
        f"log: {{level: {args.log_level}, format: json}}",
        f"events: {str(args.events).lower()}",
    ]
    gc = {k: v for k, v in (("young_every", args.gc_young), ("full_every", args.gc_full)) if v}
    if gc:  # fleetd's defaults otherwise (fleetd/service/gcpolicy.py)
        lines.append("gc: {" + ", ".join(f"{k}: {v}" for k, v in gc.items()) + "}")
    lines += [
        "hosts:",
    ]
    lines += [f"  - {{name: h{i:05d}, url: 'tcp://127.0.0.1:{p}'}}" for i, p in enumerate(ports)]
    path.write_text("\n".join(lines) + "\n")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return 1000 * xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")


async def api_load(port: int, rate: float, duration: float, probe_rate: float = 0.0) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {p: [] for p in MIX}
    probes: list[float] = []
    late: dict[int, list[float]] = {}  # wall-clock second -> latencies over 100 ms (to match fleetd's logs)
    errors = 0
    statuses: dict[str, int] = {}
    n = int(rate * duration)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http, aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=4)
    ) as probe_http:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.2

        async def one(i: int) -> None:
            nonlocal errors
            at = t0 + i / rate
            path = MIX[i % len(MIX)]
            await asyncio.sleep(max(0.0, at - loop.time()))
            try:
                async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                    await resp.read()
                    errors += resp.status != 200
                    if resp.status != 200:
                        key = f"{path} {resp.status}"
                        statuses[key] = statuses.get(key, 0) + 1
            except aiohttp.ClientError:
                errors += 1
            took = loop.time() - at
            latencies[path].append(took)
            if took > 0.1:
                late.setdefault(int(time.time() - took), []).append(took)

        async def probe(i: int) -> None:
            at = t0 + i / probe_rate
            await asyncio.sleep(max(0.0, at - loop.time()))
            with contextlib.suppress(aiohttp.ClientError):
                async with probe_http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    await resp.read()
                    probes.append(loop.time() - at)

        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        tasks += [asyncio.ensure_future(probe(i)) for i in range(int(probe_rate * duration))]
        # Requests still unanswered 10 s after the window count as answered at infinity (the API
        # fell behind): they are reported, never silently left out of the percentiles.
        _done, pending = await asyncio.wait(tasks, timeout=duration + 10.5)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    answered = sum(len(v) for v in latencies.values())
    unanswered = n - answered
    every = sorted([x for v in latencies.values() for x in v] + [float("inf")] * unanswered)
    return {
        "requests": n,
        "errors": errors,
        "errors_by_path_status": statuses,
        "unanswered_10s_after_window": unanswered,
        "p50_ms": _pct(every, 0.5),
        "p99_ms": _pct(every, 0.99),
        "max_ms": 1000 * every[-1],
        "by_path_p50_ms": {p: _pct(v, 0.5) for p, v in latencies.items() if v},
        "by_path_p99_ms": {p: _pct(v, 0.99) for p, v in latencies.items() if v},
        "slow_seconds": [  # the worst seconds: unix time, requests over 100 ms, the longest (ms)
            (sec, len(v), round(1000 * max(v))) for sec, v in sorted(late.items(), key=lambda kv: -max(kv[1]))[:8]
        ],
        "healthz_probes": len(probes),
        "healthz_p50_ms": _pct(probes, 0.5),
        "healthz_p99_ms": _pct(probes, 0.99),
        "healthz_max_ms": 1000 * max(probes) if probes else float("nan"),
    }


def freshness(api: Api, interval: float) -> dict[str, Any]:
    """The age of every healthy host's ``last_seen`` now, read page by page."""
    ages: list[float] = []
    offset = 0
    while True:
        try:
            page = api.json(f"/api/v1/hosts?state=up&limit=1000&offset={offset}")
        except RuntimeError:  # a fleetd without paged host lists (a baseline tree): all at once
            page = api.json("/api/v1/hosts?state=up")
        now = time.time()
        ages += [now - parse_rfc3339(h["last_seen"]) for h in page["hosts"] if h["last_seen"]]
        offset += len(page["hosts"])
        if not page["hosts"] or offset >= page["total"]:
            break
    ages.sort()
    return {
        "hosts": len(ages),
        "max_last_seen_age_s": round(ages[-1], 2) if ages else None,
        "p99_last_seen_age_s": round(ages[int(len(ages) * 0.99) - 1], 2) if ages else None,
        "older_than_interval": sum(a > interval for a in ages),
    }


def gc_pauses(api: Api) -> dict[str, Any]:
    """fleetd's own account of its collector passes (``fleetd_gc_pause_seconds``), read after the window:
    passes, seconds and passes over 50 ms per generation since start."""
    out: dict[str, Any] = {}
    try:
        text = api.get("/metrics").decode()
    except RuntimeError:  # a fleetd without the collector metrics, or /metrics refused
        return out
    for line in text.splitlines():
        if not line.startswith("fleetd_gc_pause_seconds"):
            continue
        name, value = line.rsplit(" ", 1)
        gen = name.split('generation="')[1].split('"')[0]
        g = out.setdefault(f"gen{gen}", {})
        if name.startswith("fleetd_gc_pause_seconds_count"):
            g["passes"] = int(float(value))
        elif name.startswith("fleetd_gc_pause_seconds_sum"):
            g["seconds"] = round(float(value), 3)
        elif 'le="0.05"' in name:
            g["le_50ms"] = int(float(value))
    for g in out.values():
        g["over_50ms"] = g.get("passes", 0) - g.pop("le_50ms", 0)
    return out


def fleet_lists(fleets: list[subprocess.Popen[str]]) -> int:
    """Container lists the fake fleets served so far (one per poll with events off), from each one's
    SIGUSR1 ``COUNTS`` line: counted outside fleetd, whose ``/metrics`` walks every host (seconds of its
    loop at 10,000 hosts, which would stall the API measured right after)."""
    total = 0
    for f in fleets:
        f.send_signal(signal.SIGUSR1)
    for f in fleets:
        assert f.stdout is not None
        while not (line := f.stdout.readline()).startswith("COUNTS"):
            if not line:
                raise RuntimeError("a fake fleet ended")
        total += int(dict(kv.split("=") for kv in line.split()[1:])["list"])
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        work = Path(tmp)
        fleets, ports = start_fleets(args, work)
        try:
            listen = free_port()
            config = work / "fleetd.yaml"
            write_config(config, args, ports, listen)
            log = open(work / "fleetd.log", "w")  # noqa: SIM115 - closed below
            env = dict(os.environ)
            if args.loop:
                env["FLEETD_EVENT_LOOP"] = args.loop
            started = time.monotonic()
            proc = subprocess.Popen(
                [PYTHON, "-m", "fleetd", "run", "--config", str(config)], cwd=work, stdout=log, stderr=log, env=env
            )
            api = Api(listen)
            spy = None
            if args.profile_startup:
                out_raw = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}-scale-h{args.hosts}-startup.raw"
                spy = subprocess.Popen(
                    [str(Path(PYTHON).parent / "py-spy"), "record", "--nonblocking", "-r", "20", "-f", "raw",
                     "-d", str(int(args.profile_startup)), "-o", str(out_raw), "-p", str(proc.pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                out["startup_profile"] = str(out_raw.relative_to(ROOT))
            try:
                done = wait_complete(api, proc, started, len(ports), len(ports), 0.25)
                out["complete_seconds"] = done["complete_seconds"]
                out["listening_seconds"] = done["listening_seconds"]
                print(f"complete view after {done['complete_seconds']:.2f} s", flush=True)
                time.sleep(args.settle)
                polls0, cpu0, t0 = fleet_lists(fleets), cpu_seconds(proc.pid), time.monotonic()
                fleet_cpu0 = sum(cpu_seconds(f.pid) for f in fleets)
                window_spy = None
                if args.profile:
                    out_raw = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}-scale-h{args.hosts}-window.raw"
                    window_spy = subprocess.Popen(
                        [str(Path(PYTHON).parent / "py-spy"), "record", "-r", str(args.profile_rate),
                         "-f", "raw", "-d", str(int(args.window)), "-o", str(out_raw), "-p", str(proc.pid),
                         # native stacks need fleetd stopped while sampled: its latencies are then not to quote
                         *(["--native"] if args.profile_native else ["--nonblocking"])],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    out["window_profile"] = str(out_raw.relative_to(ROOT))
                if args.no_api:
                    time.sleep(args.window)
                    out["api"] = None
                else:
                    out["api"] = asyncio.run(api_load(listen, args.rate, args.window, args.probe_rate))
                wall = time.monotonic() - t0
                cpu = cpu_seconds(proc.pid) - cpu0
                polls = fleet_lists(fleets) - polls0
                out["window_seconds"] = wall
                out["polls"] = polls
                out["cpu_share"] = cpu / wall
                out["cpu_ms_per_poll"] = 1000 * cpu / polls if polls else float("nan")
                out["fake_fleets_cpu_share"] = (sum(cpu_seconds(f.pid) for f in fleets) - fleet_cpu0) / wall
                out["rss_kib"] = status_kib(proc.pid, "VmRSS")
                out["rss_kib_per_host"] = out["rss_kib"] / len(ports)
                out["open_fds"] = open_fds(proc.pid)
                out["hosts_up_at_end"] = api.json("/api/v1/summary")["hosts"]["by_state"]
                out["freshness"] = freshness(api, args.interval)
                out["gc_pauses_since_start"] = gc_pauses(api)
                if window_spy is not None:
                    window_spy.wait(60)
            finally:
                out["exit_code"] = stop(proc, 30)
                log.close()
                if spy is not None:
                    spy.wait(30)
                with contextlib.suppress(OSError):
                    out["log_tail"] = (work / "fleetd.log").read_text()[-2000:]
        finally:
            for f in fleets:
                stop(f)
    out["load_after"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=10_000)
    p.add_argument("--fleets", type=int, default=5, help="fake fleet processes")
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--interval", type=float, default=30.0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--events", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--gc-young", default="", help="fleetd's gc.young_every (e.g. 1s; 0: CPython's automatic collector)")
    p.add_argument("--gc-full", default="", help="fleetd's gc.full_every (e.g. 1h; 0: never)")
    p.add_argument("--log-level", default="warning", help="fleetd's log level (info shows the collector's full passes)")
    p.add_argument("--loop", default="", help="FLEETD_EVENT_LOOP for fleetd (asyncio, uvloop)")
    p.add_argument("--settle", type=float, default=30.0)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=100.0, help="API requests per second during the window")
    p.add_argument("--profile-startup", type=float, default=0.0, help="py-spy fleetd for this many seconds from exec")
    p.add_argument("--no-api", action="store_true", help="no API load in the window (CPU share of polling alone)")
    p.add_argument("--probe-rate", type=float, default=10.0, help="/healthz per second beside the mix (loop lag)")
    p.add_argument("--profile", action="store_true", help="py-spy fleetd over the window (raw stacks in bench/results)")
    p.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    p.add_argument("--profile-native", action="store_true", help="py-spy --native (C frames: the GC, the parser; pauses fleetd per sample)")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    report = {"args": vars(args), "commit": commit.strip()} | run(args)
    name = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}-scale-h{args.hosts}.json"
    name.write_text(json.dumps(report, indent=2, default=str) + "\n")
    nan = float("nan")
    a = report["api"] or {"p50_ms": nan, "p99_ms": nan, "max_ms": nan, "errors": 0, "by_path_p99_ms": {},
                          "unanswered_10s_after_window": 0, "healthz_p50_ms": nan, "healthz_p99_ms": nan}  # fmt: skip
    fresh = report["freshness"]
    print(
        f"hosts {args.hosts}: complete view {report['complete_seconds']:.2f} s; CPU share {report['cpu_share']:.1%} "
        f"({report['cpu_ms_per_poll']:.3f} ms/poll, {report['polls']:.0f} polls in {report['window_seconds']:.0f} s); "
        f"RSS {report['rss_kib'] / 1024:.0f} MiB = {report['rss_kib_per_host']:.1f} KiB/host; fds {report['open_fds']}; "
        f"API at {args.rate:g}/s: p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms, max {a['max_ms']:.0f} ms, "
        f"errors {a['errors']}, unanswered {a['unanswered_10s_after_window']}; by path p99 {json.dumps({k: round(v, 1) for k, v in a['by_path_p99_ms'].items()})}; "
        f"/healthz (loop lag) p50 {a['healthz_p50_ms']:.1f} ms, p99 {a['healthz_p99_ms']:.1f} ms; "
        f"last_seen age max {fresh['max_last_seen_age_s']} s, p99 {fresh['p99_last_seen_age_s']} s, "
        f"{fresh['older_than_interval']} of {fresh['hosts']} older than the interval; "
        f"states at end {report['hosts_up_at_end']}; GC passes since start {json.dumps(report['gc_pauses_since_start'])}; load {report['load_before'][0]:.1f} → {report['load_after'][0]:.1f}"
    )
    print(f"results: {name.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
