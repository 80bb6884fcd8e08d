"""Does freezing the collector's survivors leak? Two fleetds, paced and automatic, side by side for a long run.

    python -m bench.gc_leak --hosts 40 --interval 1 --minutes 25 --full-every 60s

One ``bench.fake_fleet`` (container churn, a share of hosts answering 500, a share that never answer)
plus a few addresses nobody listens on, polled at the same time by two fleetd processes with Engine
events on: ``paced`` (fleetd's default collector policy, ``gc.young_every: 1s``, its full collection
every ``--full-every``) and ``automatic`` (``gc.young_every: 0``: CPython's own collector after the
start-up freeze, the same periodic full collection). Every ``--sample`` seconds, from each one's
``/metrics`` and ``/proc``: VmRSS, polls, the collector's passes and pause seconds per generation,
the unreachable objects it freed, and for the full collections the unreachable objects found among
*frozen* objects (``fleetd_gc_frozen_garbage_objects_total``: what freezing held back until then).
Reported: the RSS slope over the run after a warm-up (KiB per minute, least squares) and those counts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet_bench import PYTHON, RESULTS, ROOT, Api, cpu_seconds, free_port, status_kib, stop

__all__ = ["main"]


def metrics(api: Api) -> dict[str, float]:
    """The figures this bench follows, summed over their labels where it says so."""
    out: dict[str, float] = {}
    for line in api.get("/metrics").decode().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        base = name.split("{")[0]
        if base == "fleetd_poll_duration_seconds_count":
            out["polls"] = out.get("polls", 0.0) + float(value)
        elif base in ("fleetd_gc_pause_seconds_count", "fleetd_gc_pause_seconds_sum", "fleetd_gc_collected_objects_total"):
            gen = name.split('generation="')[1].split('"')[0]
            out[f"{base.removeprefix('fleetd_gc_')}_gen{gen}"] = float(value)
        elif base == "fleetd_gc_frozen_garbage_objects_total":
            out["frozen_garbage"] = float(value)
    return out


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="gc-leak-") as tmp:
        work = Path(tmp)
        pf = work / "ports.txt"
        fleet = subprocess.Popen(
            [PYTHON, "-m", "bench.fake_fleet", "--hosts", str(args.hosts), "--churn", str(args.churn),
             "--error-fraction", str(args.error_fraction), "--hang-fraction", str(args.hang_fraction),
             "--latency", "0.02", "--seed", "3", "--port-file", str(pf)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs: dict[str, subprocess.Popen[bytes]] = {}
        logs = []
        try:
            assert fleet.stdout is not None
            if not fleet.stdout.readline().startswith("READY"):
                raise RuntimeError("fake fleet did not start")
            ports = [int(p) for p in pf.read_text().split()]
            closed = [free_port() for _ in range(args.refused)]  # connection refused on every poll
            apis: dict[str, Api] = {}
            for name, young in (("paced", "1s"), ("automatic", "0")):
                listen = free_port()
                lines = [
                    f"listen: 127.0.0.1:{listen}",
                    f"poll: {{interval: {args.interval:g}s, timeout: {min(args.interval, 2.0) * 0.9:g}s}}",
                    "snapshots: {enabled: false}",
                    "auth: {anonymous_read: true}",
                    "log: {level: info, format: json}",
                    f"gc: {{young_every: {young}, full_every: {args.full_every}}}",
                    "hosts:",
                ]
                lines += [f"  - {{name: h{i:03d}, url: 'tcp://127.0.0.1:{p}'}}" for i, p in enumerate(ports + closed)]
                config = work / f"{name}.yaml"
                config.write_text("\n".join(lines) + "\n")
                log = open(work / f"{name}.log", "w")  # noqa: SIM115 - closed below
                logs.append(log)
                cmd = [PYTHON, "-m", "fleetd", "run", "--config", str(config)]
                procs[name] = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=log)
                apis[name] = Api(listen)
            started = time.monotonic()
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in procs}
            end = started + 60 * args.minutes
            while time.monotonic() < end:
                time.sleep(args.sample)
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"fleetd {name} exited with {proc.returncode}")
                    try:
                        m = metrics(apis[name])
                    except (OSError, RuntimeError):
                        continue  # not listening yet
                    m["t_min"] = (time.monotonic() - started) / 60
                    m["rss_kib"] = status_kib(proc.pid, "VmRSS")
                    m["cpu_s"] = cpu_seconds(proc.pid)
                    samples[name].append(m)
                print(" ".join(f"{n}: {s[-1]['rss_kib'] / 1024:.1f} MiB" for n, s in samples.items() if s), flush=True)
            for name, series in samples.items():
                warm = [s for s in series if s["t_min"] >= args.warmup]
                first, last = warm[0], warm[-1]
                out[name] = {
                    "rss_first_kib": first["rss_kib"],
                    "rss_last_kib": last["rss_kib"],
                    "rss_slope_kib_per_min": round(slope([s["t_min"] for s in warm], [s["rss_kib"] for s in warm]), 2),
                    "minutes_measured": round(last["t_min"] - first["t_min"], 1),
                    "polls": last.get("polls", 0) - first.get("polls", 0),
                    "cpu_ms_per_poll": round(
                        1000 * (last["cpu_s"] - first["cpu_s"]) / max(1.0, last.get("polls", 0) - first.get("polls", 0)), 3
                    ),
                    "last": last,
                    "series": series,
                }
                out[name]["full_collections"] = [
                    json.loads(line)
                    for line in (work / f"{name}.log").read_text().splitlines()
                    if '"full garbage collection"' in line or '"start-up objects frozen' in line
                ]
        finally:
            for proc in procs.values():
                stop(proc, 30)
            for log in logs:
                log.close()
            stop(fleet)
    out["load_after"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gc_leak", description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=40, help="fake engines (the bench lock is for more than ~50)")
    p.add_argument("--refused", type=int, default=4, help="host addresses nobody listens on")
    p.add_argument("--churn", type=float, default=5.0, help="container changes per second")
    p.add_argument("--error-fraction", type=float, default=0.1)
    p.add_argument("--hang-fraction", type=float, default=0.05)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--minutes", type=float, default=25.0)
    p.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the RSS slope")
    p.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--full-every", default="60s", help="gc.full_every of both fleetds")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the fleetds and the fake fleet on the way out
    RESULTS.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    report = {"args": vars(args), "commit": commit.strip()} | run(args)
    name = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}-gc-leak.json"
    name.write_text(json.dumps(report, indent=2, default=str) + "\n")
    for mode in ("paced", "automatic"):
        r = report[mode]
        last = r["last"]
        found = [f.get("unreachable") for f in r["full_collections"]]
        print(
            f"{mode}: RSS {r['rss_first_kib'] / 1024:.1f} -> {r['rss_last_kib'] / 1024:.1f} MiB over "
            f"{r['minutes_measured']} min, slope {r['rss_slope_kib_per_min']} KiB/min; {r['polls']:.0f} polls, "
            f"{r['cpu_ms_per_poll']} ms CPU/poll; freed by passes (gen0/1/2) "
            f"{last.get('collected_objects_total_gen0', 0):.0f}/{last.get('collected_objects_total_gen1', 0):.0f}/"
            f"{last.get('collected_objects_total_gen2', 0):.0f}; frozen garbage found by the full collections "
            f"{last.get('frozen_garbage', 0):.0f} in all, per collection {found}"
        )
    print(f"results: {name.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
