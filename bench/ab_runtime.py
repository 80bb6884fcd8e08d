"""Two fleetd source trees side by side on one simulated fleet: CPU per poll, window by window.

    git archive main | tar -x -C /tmp/fleetd-before
    python -m bench.ab_runtime --tree before=/tmp/fleetd-before --tree after=. --rounds 6

Both ``fleetd run`` processes poll the same fake fleet (``bench.fake_fleet``) at the same time, each
from its own tree (``PYTHONPATH``), so the machine's load, which on a shared machine moves by tens of
percent from one minute to the next, weighs on both alike. After the complete view and ``--settle``
seconds, each round measures both over the same ``--window`` seconds: CPU time (utime + stime) divided
by the polls finished in it (``fleetd_poll_duration_seconds`` count). Rounds alternate which process is
read first. The report gives each round's figures, the ratio of every tree to the first, and the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet_bench import (
    PYTHON,
    RESULTS,
    Api,
    cpu_seconds,
    fake_fleet,
    free_port,
    status_kib,
    stop,
    wait_complete,
    write_config,
)

__all__ = ["main"]


def start_tree(
    label: str, tree: Path, fleet_ports: list[int], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    home = workdir / label
    home.mkdir()
    listen = free_port()
    config = home / "fleetd.yaml"
    write_config(config, args, fleet_ports, listen)
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
    log = open(home / "fleetd.log", "w")  # noqa: SIM115 - closed in stop_tree
    proc = subprocess.Popen(
        [PYTHON, "-m", "fleetd", "run", "--config", str(config)], cwd=home, env=env, stdout=log, stderr=log
    )
    return {
        "label": label,
        "tree": str(tree),
        "proc": proc,
        "api": Api(listen),
        "log": log,
        "started": time.monotonic(),
    }


def measure_round(runs: list[dict[str, Any]], window: float) -> dict[str, dict[str, float]]:
    before = {r["label"]: (r["api"].polls(), cpu_seconds(r["proc"].pid)) for r in runs}
    time.sleep(window)
    out: dict[str, dict[str, float]] = {}
    for r in runs:
        polls0, cpu0 = before[r["label"]]
        cpu = cpu_seconds(r["proc"].pid) - cpu0
        polls = r["api"].polls() - polls0
        out[r["label"]] = {
            "polls": polls,
            "cpu_seconds": cpu,
            "cpu_ms_per_poll": 1000 * cpu / polls if polls else float("nan"),
            "rss_kib": status_kib(r["proc"].pid, "VmRSS"),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab_runtime", description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", required=True, metavar="LABEL=PATH", help="twice or more")
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--hang-fraction", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval", type=float, default=15.0)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--settle", type=float, default=20.0)
    p.add_argument("--window", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args(argv)
    trees = [(label, Path(path)) for label, _, path in (t.partition("=") for t in args.tree)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "args": vars(args),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    with tempfile.TemporaryDirectory(prefix="fleet-ab-") as tmp, fake_fleet(args, Path(tmp)) as fleet:
        workdir = Path(tmp)
        runs = [start_tree(label, tree, fleet.ports, args, workdir) for label, tree in trees]
        try:
            healthy = args.hosts - fleet.hanging
            for r in runs:
                done = wait_complete(r["api"], r["proc"], r["started"], healthy, args.hosts, 0.2)
                print(f"{r['label']}: complete view after {done['complete_seconds']:.1f} s", flush=True)
                r["complete_seconds"] = done["complete_seconds"]
            time.sleep(args.settle)
            rounds = []
            for i in range(args.rounds):
                order = runs if i % 2 == 0 else list(reversed(runs))
                got = measure_round(order, args.window)
                for r in runs:  # a round counts only if every host answered its polls in it
                    up = r["api"].json("/api/v1/summary")["hosts"]["by_state"]["up"]
                    got[r["label"]]["hosts_up_at_end"] = up
                got_line = ", ".join(
                    f"{k} {v['cpu_ms_per_poll']:.4f} ms/poll ({v['polls']:.0f} polls)" for k, v in got.items()
                )
                print(f"round {i + 1}: {got_line}; load {os.getloadavg()[0]:.1f}", flush=True)
                rounds.append(got | {"loadavg": os.getloadavg()[0]})
        finally:
            for r in runs:
                r["exit_code"] = stop(r["proc"])
                r["log"].close()
    first = trees[0][0]
    summary: dict[str, Any] = {}
    for label, _ in trees:
        ratios = [rd[label]["cpu_ms_per_poll"] / rd[first]["cpu_ms_per_poll"] for rd in rounds]
        summary[label] = {
            "cpu_ms_per_poll_median": statistics.median(rd[label]["cpu_ms_per_poll"] for rd in rounds),
            "ratio_to_first_each_round": ratios,
            "ratio_to_first_median": statistics.median(ratios),
            "rss_kib_last": rounds[-1][label]["rss_kib"],
        }
        print(
            f"{label}: median {summary[label]['cpu_ms_per_poll_median']:.4f} CPU ms/poll, "
            f"ratio to {first}: median {summary[label]['ratio_to_first_median']:.3f} "
            f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})"
        )
    report["rounds"] = rounds
    report["summary"] = summary
    report["exit_codes"] = {r["label"]: r["exit_code"] for r in runs}
    out = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}-ab-runtime.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
