"""Where fleetd's memory per host goes: tracemalloc at two fleet sizes, the difference per host.

    python -m bench.mem_profile --sizes 200,1000 --events false --top 40

One fake fleet (``bench.fake_fleet``) of the largest size; for each size, one ``fleetd run`` under
tracemalloc (``bench.traced_fleetd``) polling that many of its hosts, one after the other. After the
complete view and ``--settle`` seconds each writes its live allocations grouped by the fleetd line
that asked for them (and the innermost line that allocated). Reported: VmRSS and the traced total at
each size, their slope ``(big - small) / (hosts_big - hosts_small)`` in KiB per host, and the groups
whose slope is largest (``bench/results/*-mem.json`` keeps every group). tracemalloc sees Python's
allocators only: the gap between the RSS slope and the traced slope is what it cannot see (C
libraries' own mallocs, allocator fragmentation, freed arenas not given back).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet_bench import PYTHON, RESULTS, ROOT, Api, fake_fleet, free_port, stop, wait_complete
from bench.poll_bench import fleetd_config

__all__ = ["main"]


def traced_run(size: int, ports: list[int], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    home = work / f"n{size}"
    home.mkdir()
    listen = free_port()
    config = home / "fleetd.yaml"
    fleetd_config(config, args, ports[:size], listen, {"events": args.events})
    out = home / "mem.json"
    log = open(home / "fleetd.log", "w")  # noqa: SIM115 - closed below
    started = time.monotonic()
    cmd = [PYTHON, "-m", "bench.traced_fleetd", str(out), "--frames", str(args.frames), "--config", str(config)]
    proc = subprocess.Popen(cmd, cwd=home, stdout=log, stderr=log, env={"PYTHONPATH": str(ROOT), **_env()})
    try:
        done = wait_complete(Api(listen), proc, started, size, size, 0.5)
        print(f"{size} hosts: complete view after {done['complete_seconds']:.1f} s (traced)", flush=True)
        time.sleep(args.settle)
        proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 300
        while not out.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"no snapshot from the {size}-host fleetd")
            time.sleep(0.5)
        doc: dict[str, Any] = json.loads(out.read_text())
    finally:
        stop(proc)
        log.close()
    return doc


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mem_profile", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="200,1000")
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--interval", type=float, default=15.0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--events", default="false")
    p.add_argument("--settle", type=float, default=20.0)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    small, big = sizes[0], sizes[-1]
    args.hosts, args.hang_fraction = big, 0.0
    with tempfile.TemporaryDirectory(prefix="mem-profile-") as tmp, fake_fleet(args, Path(tmp)) as fleet:
        docs = {n: traced_run(n, fleet.ports, args, Path(tmp)) for n in (small, big)}
    span = big - small
    a, b = docs[small], docs[big]
    rss_slope = (b["rss_kib"] - a["rss_kib"]) / span
    traced_slope = (b["traced"] - a["traced"]) / 1024 / span
    print(f"VmRSS: {a['rss_kib'] / 1024:.1f} MiB at {small}, {b['rss_kib'] / 1024:.1f} MiB at {big}: "
          f"{a['rss_kib'] / small:.1f} / {b['rss_kib'] / big:.1f} KiB per host (RSS / hosts), "
          f"slope {rss_slope:.1f} KiB per host")  # fmt: skip
    print(f"traced: {a['traced'] / 2**20:.1f} MiB at {small}, {b['traced'] / 2**20:.1f} MiB at {big}: "
          f"slope {traced_slope:.1f} KiB per host (not traced: {rss_slope - traced_slope:.1f} KiB per host)")  # fmt: skip
    sizes_a = {(g["owner"], g["inner"]): g for g in a["groups"]}
    rows = []
    for g in b["groups"]:
        key = (g["owner"], g["inner"])
        ga = sizes_a.pop(key, {"size": 0, "count": 0})
        rows.append((key, (g["size"] - ga["size"]) / span, (g["count"] - ga["count"]) / span))
    rows += [(k, -g["size"] / span, -g["count"] / span) for k, g in sizes_a.items()]
    rows.sort(key=lambda r: -r[1])
    by_owner_file: dict[str, float] = {}
    for (owner, _inner), per, _n in rows:
        f = owner.rpartition(":")[0]
        by_owner_file[f] = by_owner_file.get(f, 0.0) + per
    print("\nper host, by the fleetd file that asked (bytes):")
    for f, per in sorted(by_owner_file.items(), key=lambda kv: -kv[1])[: args.top // 2]:
        print(f"  {per:9.0f}  {f}")
    print("\nper host, by line (bytes, blocks):")
    for (owner, inner), per, n in rows[: args.top]:
        print(f"  {per:9.0f} {n:7.1f}  {owner}  <-  {inner}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (time.strftime("%Y%m%dT%H%M%S") + f"-mem-{small}-{big}-events-{args.events}.json")
    out.write_text(json.dumps({"args": vars(args), "small": a, "big": b, "rss_slope_kib": rss_slope,
                               "traced_slope_kib": traced_slope}, indent=1) + "\n")  # fmt: skip
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
