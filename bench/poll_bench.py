"""fleetd's poll path against the leanest aiohttp code doing the same work, side by side in one run.

    python -m bench.poll_bench steady --hosts 1000 --interval 15 --rounds 4 --window 20 \\
        --fleetd default --fleetd noevents:events=false --lean orjson --lean none
    python -m bench.poll_bench cold --hosts 1000 --pairs 3 --concurrency 256

**steady**: one fake fleet (``bench.fake_fleet``, a process of its own); every ``--fleetd`` variant
(``LABEL[:key=value,...]``; keys: ``events`` true/false, ``loop`` auto/asyncio/uvloop (sets
``FLEETD_EVENT_LOOP``), ``tree`` a source tree put first on ``PYTHONPATH``, ``images_every``,
``hosts`` how many of the fleet's hosts it polls, the first ones) and
every ``--lean`` poller (``bench.lean_poller``, the decoder named) poll it **at the same time**, so
the machine's load weighs on all of them alike. After the complete view and ``--settle`` seconds,
each of ``--rounds`` rounds measures every process over the same ``--window``: CPU time (utime +
stime from /proc) divided by the polls it finished (fleetd: its ``fleetd_poll_duration_seconds``
count; lean pollers: their SIGUSR1 count), and VmRSS. Reported: per round and median, and each
fleetd variant's ratio to the first lean poller.

Memory per host is reported two ways. ``VmRSS / hosts`` counts the interpreter, its imports and
everything else a process has before its first host (~60 MiB for fleetd) as if each host brought its
share, so it shrinks as the fleet grows. ``--slope-hosts N`` also starts, for each ``--fleetd``
variant, a twin ``LABEL@N`` polling only the first N hosts, and reports the **slope**
``(VmRSS(hosts) - VmRSS(N)) / (hosts - N)``: what one more host costs, measured in the same run. ``--profile LABEL`` records that fleetd variant
with py-spy over the last round (``bench/results/*-LABEL.raw``, collapsed stacks).

**cold**: ``--pairs`` alternating pairs of whole processes from exec: ``bench.plain_gather``
(aiohttp + orjson, ``/info`` then ``/containers/json?all=1`` per host at ``--concurrency``) to its
answer line, and ``fleetd run`` to the first ``/api/v1/summary`` whose hosts are all ``up`` (read
every ``--api-poll`` seconds). Several ``--fleetd`` variants (e.g. ``base:tree=DIR`` and the work tree)
each run once per pair, the order reversed every other pair. Also reported: the CPU time (utime + stime)
each process used to its answer and the fake fleet's CPU meanwhile (on a loaded machine the wall-clock
ratio swings with the scheduler; the CPU ratio much less), and fleetd's import and config-load times
measured alone. ``--profile LABEL`` records that variant's last run with py-spy from exec.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
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
    ROOT,
    Api,
    cpu_seconds,
    fake_fleet,
    free_port,
    status_kib,
    stop,
    wait_complete,
)

__all__ = ["main"]


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    label, _, rest = spec.partition(":")
    opts = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return label, opts


def fleetd_config(path: Path, args: argparse.Namespace, ports: list[int], listen: int, opts: dict[str, str]) -> None:
    lines = [
        f"listen: 127.0.0.1:{listen}",
        "poll:",
        f"  interval: {args.interval:g}s",
        f"  timeout: {args.timeout:g}s",
        f"  concurrency: {opts.get('concurrency', args.concurrency)}",
        f"  images_every: {opts.get('images_every', 5)}",
        "snapshots: {enabled: false}",
        "auth: {anonymous_read: true}",
        "log: {level: info, format: json}",
        f"events: {opts.get('events', 'true')}",
        "hosts:",
    ]
    lines += [f"  - {{name: h{i:05d}, url: 'tcp://127.0.0.1:{p}'}}" for i, p in enumerate(ports)]
    path.write_text("\n".join(lines) + "\n")


def start_fleetd(label: str, opts: dict[str, str], ports: list[int], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    hosts = int(opts.get("hosts", len(ports)))
    ports = ports[:hosts]
    home = work / label
    home.mkdir(exist_ok=True)
    listen = free_port()
    config = home / "fleetd.yaml"
    fleetd_config(config, args, ports, listen, opts)
    env = dict(os.environ)
    if "tree" in opts:
        env["PYTHONPATH"] = str(Path(opts["tree"]).resolve())
    if "loop" in opts:
        env["FLEETD_EVENT_LOOP"] = opts["loop"]
    log = open(home / "fleetd.log", "w")  # noqa: SIM115 - closed by the caller
    started = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, "-m", "fleetd", "run", "--config", str(config)], cwd=home, env=env, stdout=log, stderr=log
    )
    return {
        "label": label, "kind": "fleetd", "proc": proc, "api": Api(listen), "log": log, "started": started,
        "hosts": hosts,
    }  # fmt: skip


def start_lean(decode: str, fleet_port_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        PYTHON, "-m", "bench.lean_poller", "--port-file", str(fleet_port_file), "--interval", f"{args.interval:g}",
        "--timeout", f"{args.timeout:g}", "--concurrency", str(args.concurrency), "--decode", decode,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        raise RuntimeError("lean poller did not start")
    return {"label": f"lean-{decode}", "kind": "lean", "proc": proc, "hosts": args.hosts}


def polls_of(run: dict[str, Any]) -> float:
    if run["kind"] == "fleetd":
        return float(run["api"].polls())
    run["proc"].send_signal(signal.SIGUSR1)
    line = run["proc"].stdout.readline()
    return float(line.strip().partition("=")[2])


def steady(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"rounds": []}
    with tempfile.TemporaryDirectory(prefix="poll-bench-") as tmp, fake_fleet(args, Path(tmp)) as fleet:
        work = Path(tmp)
        runs: list[dict[str, Any]] = []
        try:
            for spec in args.fleetd:
                label, opts = parse_variant(spec)
                runs.append(start_fleetd(label, opts, fleet.ports, args, work))
                if args.slope_hosts:
                    twin = f"{label}@{args.slope_hosts}"
                    runs.append(start_fleetd(twin, opts | {"hosts": str(args.slope_hosts)}, fleet.ports, args, work))
            for r in runs:
                done = wait_complete(r["api"], r["proc"], r["started"], r["hosts"], r["hosts"], 0.2)
                print(f"{r['label']}: complete view after {done['complete_seconds']:.2f} s", flush=True)
            runs += [start_lean(d, fleet.port_file, args) for d in args.lean]
            time.sleep(args.settle)
            for i in range(args.rounds):
                spy = None
                if args.profile and i == args.rounds - 1:
                    target = next(r for r in runs if r["label"] == args.profile)
                    out = RESULTS / f"{args.stamp}-{args.profile}.raw"
                    spy = subprocess.Popen(
                        [str(Path(PYTHON).parent / "py-spy"), "record", "--nonblocking", "-r", "50", "-f", "raw",
                         "-d", str(int(args.window)), "-o", str(out), "-p", str(target["proc"].pid)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                order = runs if i % 2 == 0 else runs[::-1]
                before = {r["label"]: (polls_of(r), cpu_seconds(r["proc"].pid)) for r in order}
                load0 = os.getloadavg()[0]
                time.sleep(args.window)
                got: dict[str, Any] = {"load_before": load0}
                for r in order:
                    p0, c0 = before[r["label"]]
                    cpu, polls = cpu_seconds(r["proc"].pid) - c0, polls_of(r) - p0
                    rss = status_kib(r["proc"].pid, "VmRSS")
                    got[r["label"]] = {
                        "polls": polls,
                        "cpu_seconds": cpu,
                        "cpu_ms_per_poll": 1000 * cpu / polls if polls else float("nan"),
                        "rss_kib": rss,
                        "rss_kib_per_host": rss / r["hosts"],
                    }
                got["load_after"] = os.getloadavg()[0]
                got["fake_fleet_cpu"] = cpu_seconds(fleet.proc.pid)
                if spy is not None:
                    spy.wait()
                line = ", ".join(f"{r['label']} {got[r['label']]['cpu_ms_per_poll']:.3f}" for r in runs)
                print(f"round {i + 1}: CPU ms/poll {line}; load {load0:.1f}→{got['load_after']:.1f}", flush=True)
                report["rounds"].append(got)
            for r in runs:
                if r["kind"] == "fleetd":
                    report.setdefault("hosts_up_at_end", {})[r["label"]] = r["api"].json("/api/v1/summary")[
                        "hosts"
                    ]["by_state"]["up"]
        finally:
            for r in runs:
                stop(r["proc"])
                if "log" in r:
                    r["log"].close()
    labels = [r["label"] for r in runs]
    base = next((lb for lb in labels if lb.startswith("lean-")), None)
    summary: dict[str, Any] = {}
    for lb in labels:
        per = [rd[lb]["cpu_ms_per_poll"] for rd in report["rounds"]]
        last = report["rounds"][-1]
        s: dict[str, Any] = {
            "median_cpu_ms_per_poll": statistics.median(per),
            "rss_kib": last[lb]["rss_kib"],
            "rss_kib_per_host": last[lb]["rss_kib_per_host"],
        }
        twin = f"{lb}@{args.slope_hosts}"
        if args.slope_hosts and twin in last:
            s["rss_slope_kib_per_host"] = (last[lb]["rss_kib"] - last[twin]["rss_kib"]) / (args.hosts - args.slope_hosts)
        if base is not None:
            ratios = [rd[lb]["cpu_ms_per_poll"] / rd[base]["cpu_ms_per_poll"] for rd in report["rounds"]]
            s["ratio_to_" + base] = statistics.median(ratios)
            s["ratios"] = ratios
        summary[lb] = s
        extra = f", ratio to {base} {s['ratio_to_' + base]:.3f}" if base else ""
        if "rss_slope_kib_per_host" in s:
            extra += f", slope {s['rss_slope_kib_per_host']:.1f} KiB/host ({args.slope_hosts} → {args.hosts} hosts)"
        print(
            f"{lb}: median {s['median_cpu_ms_per_poll']:.3f} CPU ms/poll{extra}, VmRSS {s['rss_kib'] / 1024:.1f} MiB "
            f"= {s['rss_kib_per_host']:.1f} KiB/host"
        )
    report["summary"] = summary
    return report


def fleetd_phases(config: Path, tree: str | None = None) -> dict[str, float]:
    """fleetd's imports and its config load, timed alone in a fresh interpreter."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import fleetd.service.runner, fleetd.runtime, fleetd.api.app\n"
        "t1 = time.perf_counter()\n"
        "from fleetd.config.loader import load_config\n"
        f"load_config({str(config)!r}); t2 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1)\n"
    )
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = str(Path(tree).resolve())
    out = subprocess.run([PYTHON, "-c", code], cwd=tree or ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    imports, config_load = (float(x) for x in out.split())
    return {"import_seconds": imports, "config_seconds": config_load}


def compile_trees(specs: list[str]) -> list[str]:
    """Byte-compile each variant's fleetd package first. An installed fleetd starts from compiled
    bytecode (pip compiles at install; the script's aiohttp and orjson are compiled too), but with
    PYTHONDONTWRITEBYTECODE set, as on the lab machine, a source tree would compile its ~230 modules
    on every start (0.15-0.25 s of CPU), which no deployed fleetd does."""
    trees = sorted({str(Path(parse_variant(sp)[1].get("tree", ROOT)).resolve()) for sp in specs})
    for tree in trees:
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(Path(tree) / "fleetd")], check=True)
    return trees


def cold_fleetd(spec: str, i: int, fleet: Any, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    label, opts = parse_variant(spec)
    opts.setdefault("concurrency", str(args.concurrency))
    r = start_fleetd(f"{label}-{i}", opts, fleet.ports, args, work)
    spy = None
    if args.profile == label and i == args.pairs - 1:  # py-spy from just after exec, the last pair
        out = RESULTS / f"{args.stamp}-{label}.raw"
        spy = subprocess.Popen(
            [str(Path(PYTHON).parent / "py-spy"), "record", "--nonblocking", "-r", "200", "-f", "raw",
             "-o", str(out), "-p", str(r["proc"].pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    fake0 = cpu_seconds(fleet.proc.pid)
    try:
        done = wait_complete(r["api"], r["proc"], r["started"], args.hosts, args.hosts, args.api_poll)
        cpu = cpu_seconds(r["proc"].pid)  # at the complete view (the read above is a few ms old)
        fake = cpu_seconds(fleet.proc.pid) - fake0
    finally:
        if spy is not None:  # the profile ends at the complete view, not after the shutdown
            spy.send_signal(signal.SIGINT)
            spy.wait()
        stop(r["proc"])
        r["log"].close()
    return {"seconds": done["complete_seconds"], "listening_seconds": done["listening_seconds"],
            "cpu_seconds": cpu, "fake_fleet_cpu_seconds": fake}  # fmt: skip


def cold(args: argparse.Namespace) -> dict[str, Any]:
    """Each pair: the plain script and every ``--fleetd`` variant (the order reversed every other
    pair); each variant's ratio is to the script of its own pair."""
    report: dict[str, Any] = {"pairs": []}
    specs = args.fleetd or ["default"]
    labels = [parse_variant(sp)[0] for sp in specs]
    report["bytecode"] = compile_trees(specs)
    with tempfile.TemporaryDirectory(prefix="poll-cold-") as tmp, fake_fleet(args, Path(tmp)) as fleet:
        work = Path(tmp)
        for i in range(args.pairs):
            pair: dict[str, Any] = {"load_before": os.getloadavg()[0], "variants": {}}
            kinds = ["script", *specs] + (["gather"] if args.with_fleet_bench_gather else [])
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                if kind == "gather":  # bench.fleet_bench's yardstick: /_ping, then /info + /containers at once
                    t0 = time.monotonic()
                    cmd = [PYTHON, "-m", "bench.baseline_gather", "--port-file", str(fleet.port_file),
                           "--concurrency", str(args.concurrency)]  # fmt: skip
                    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
                    pair["fleet_bench_gather_seconds"] = time.monotonic() - t0
                elif kind == "script":
                    t0, fake0 = time.monotonic(), cpu_seconds(fleet.proc.pid)
                    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cmd = [PYTHON, "-m", "bench.plain_gather", "--port-file", str(fleet.port_file),
                           "--concurrency", str(args.concurrency)]  # fmt: skip
                    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
                    pair["script_seconds"] = time.monotonic() - t0
                    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
                    pair["script_cpu_seconds"] = kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime
                    pair["script_fake_fleet_cpu_seconds"] = cpu_seconds(fleet.proc.pid) - fake0
                    pair["script"] = json.loads(out)
                else:
                    pair["variants"][parse_variant(kind)[0]] = cold_fleetd(kind, i, fleet, args, work)
            for v in pair["variants"].values():
                v["ratio"] = v["seconds"] / pair["script_seconds"]
                v["cpu_ratio"] = v["cpu_seconds"] / pair["script_cpu_seconds"]
            first = pair["variants"][labels[0]]
            pair |= {"fleetd_seconds": first["seconds"], "fleetd_listening_seconds": first["listening_seconds"],
                     "ratio": first["ratio"]}  # fmt: skip
            if "fleet_bench_gather_seconds" in pair:
                pair["ratio_to_fleet_bench_gather"] = pair["fleetd_seconds"] / pair["fleet_bench_gather_seconds"]
                print(f"  fleet_bench's gather {pair['fleet_bench_gather_seconds']:.2f} s, "
                      f"ratio {pair['ratio_to_fleet_bench_gather']:.2f}")  # fmt: skip
            pair["load_after"] = os.getloadavg()[0]
            each = "; ".join(
                f"{lb} {v['seconds']:.2f} s (listening after {v['listening_seconds']:.2f} s), ratio {v['ratio']:.2f}, "
                f"CPU {v['cpu_seconds']:.2f} s + fake fleet {v['fake_fleet_cpu_seconds']:.2f} s"
                for lb, v in pair["variants"].items()
            )
            print(f"pair {i + 1}: script {pair['script_seconds']:.2f} s (CPU {pair['script_cpu_seconds']:.2f} s + "
                  f"fake fleet {pair['script_fake_fleet_cpu_seconds']:.2f} s); {each}; "
                  f"load {pair['load_before']:.1f}→{pair['load_after']:.1f}", flush=True)  # fmt: skip
            report["pairs"].append(pair)
        report["phases"] = {}
        for spec in specs:
            label, opts = parse_variant(spec)
            probe = work / f"phases-{label}.yaml"
            fleetd_config(probe, args, fleet.ports, free_port(), opts)
            report["phases"][label] = fleetd_phases(probe, opts.get("tree"))
    report["median_ratio"] = statistics.median(p["ratio"] for p in report["pairs"])
    report["median_ratios"] = {lb: statistics.median(p["variants"][lb]["ratio"] for p in report["pairs"]) for lb in labels}
    report["median_cpu_ratios"] = {
        lb: statistics.median(p["variants"][lb]["cpu_ratio"] for p in report["pairs"]) for lb in labels
    }
    for lb in labels:
        ph = report["phases"][lb]
        print(
            f"{lb}: median ratio {report['median_ratios'][lb]:.2f} (CPU {report['median_cpu_ratios'][lb]:.2f}); "
            f"fleetd imports {ph['import_seconds']:.2f} s, config load {ph['config_seconds']:.2f} s"
        )
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.poll_bench", description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("steady", "cold"))
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--hang-fraction", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval", type=float, default=15.0)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--fleetd", action="append", default=[], metavar="LABEL[:k=v,...]")
    p.add_argument("--lean", action="append", default=[], choices=("orjson", "msgspec", "none"))
    p.add_argument("--settle", type=float, default=15.0)
    p.add_argument("--window", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--slope-hosts", type=int, default=0, help="steady: a twin of each fleetd variant polling this many hosts")
    p.add_argument("--profile", default="", help="a --fleetd label to record with py-spy (steady: the last round; "
                   "cold: its last run, from exec)")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--api-poll", type=float, default=0.02)
    p.add_argument("--with-fleet-bench-gather", action="store_true", help="cold: also time bench.baseline_gather")
    p.add_argument("--label", default="")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "steady" and not args.fleetd:
        args.fleetd = ["default"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.stamp = time.strftime("%Y%m%dT%H%M%S") + f"-poll-{args.mode}-h{args.hosts}" + (f"-{args.label}" if args.label else "")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report = {"args": {k: v for k, v in vars(args).items() if k != "stamp"}, "commit": commit}
    report |= steady(args) if args.mode == "steady" else cold(args)
    out = RESULTS / f"{args.stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"commit {commit}; results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
