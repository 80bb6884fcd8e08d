"""fleetd against a simulated fleet: start-up versus a plain gather script, steady-state cost, hangs.

Run from the repository root::

    python -m bench.fleet_bench --hosts 1000 --latency 0.05
    python -m bench.fleet_bench --hosts 1000 --latency 0.05 --hang-fraction 0.1

Each run starts ``bench.fake_fleet`` in a process of its own, writes a fleetd config for its ports
(snapshots off) and then measures:

1. **Complete view.** The plain aiohttp + gather script (``bench.baseline_gather``: ``/_ping``, then
   ``/info`` and ``/containers/json?all=1``) fetches every host once (``--baseline-runs`` times, and
   ``--baseline-images-runs`` times with ``/images/json`` too, the fourth request of fleetd's first
   poll); then ``fleetd run`` starts and ``/api/v1/summary`` is read every ``--api-poll`` seconds
   until every answering host is ``up``. Both times are wall clock from ``Popen`` to the answer, so
   both include the interpreter's start-up and imports. The ratio uses the fastest gather run.
2. **Steady state.** After ``--settle`` seconds, over ``--window`` seconds: fleetd's CPU time
   (utime + stime from ``/proc/PID/stat``) divided by the polls it finished in that window (its
   ``fleetd_poll_duration_seconds`` count, scraped just outside the window), and VmRSS / hosts.
   With ``--baseline-steady`` (the default), after fleetd has stopped, a plain aiohttp poller making
   the same requests on the same schedule is measured the same way, once decoding its answers and
   once only reading them: the floor aiohttp itself sets on this machine.
3. **Freshness.** For ``--ages-window`` seconds, ``/api/v1/hosts`` every ``--ages-every`` seconds:
   the age of each answering host's ``last_seen`` (max and p99), against interval + timeout.

Results go to stdout as a table and to ``bench/results/fleet-*.json``. ``--profile py-spy`` records
fleetd during the steady-state window (py-spy must be installed); ``--profile cprofile`` runs
fleetd under cProfile for its whole life.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetd.util.timefmt import parse_rfc3339

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
_POLLS_RE = re.compile(r'^fleetd_poll_duration_seconds_count\{outcome="(\w+)"\} (\S+)$', re.M)


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    """A port below the ephemeral range that nothing listens on right now (fleetd's API)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> int | None:
    """SIGTERM the process we started, by its pid; SIGKILL it if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class FakeFleetProc:
    proc: subprocess.Popen[str]
    ports: list[int]
    port_file: Path
    hanging: int


@contextmanager
def fake_fleet(args: argparse.Namespace, workdir: Path) -> Iterator[FakeFleetProc]:
    port_file = workdir / "ports.txt"
    cmd = [
        PYTHON, "-m", "bench.fake_fleet", "--hosts", str(args.hosts), "--containers", str(args.containers),
        "--latency", str(args.latency), "--hang-fraction", str(args.hang_fraction),
        "--seed", str(args.seed), "--port-file", str(port_file),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the fleet prints READY once every port listens
        if not line.startswith("READY"):
            raise RuntimeError(f"fake fleet did not start: {line!r}")
        hanging = int(re.search(r"hanging=(\d+)", line).group(1))  # type: ignore[union-attr]
        ports = [int(p) for p in port_file.read_text().split()]
        yield FakeFleetProc(proc, ports, port_file, hanging)
    finally:
        stop(proc)


def write_config(path: Path, args: argparse.Namespace, ports: list[int], listen_port: int) -> None:
    lines = [
        f"listen: 127.0.0.1:{listen_port}",
        "poll:",
        f"  interval: {args.interval}s",
        f"  timeout: {args.timeout}s",
        f"  concurrency: {args.concurrency}",
        "snapshots: {enabled: false}",
        "auth: {anonymous_read: true}",
        "log: {level: info, format: json}",
        "hosts:",
    ]
    lines += [f"  - {{name: h{i:05d}, url: 'tcp://127.0.0.1:{p}'}}" for i, p in enumerate(ports)]
    path.write_text("\n".join(lines) + "\n")


class Api:
    """A keep-alive HTTP client for fleetd's API (stdlib, so it costs the bench little)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> bytes:
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self._conn.request("GET", path)
                resp = self._conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
                return body
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def polls(self) -> float:
        """Polls fleetd finished so far (success and failure), from its Prometheus histogram."""
        text = self.get("/metrics").decode()
        return sum(float(n) for _outcome, n in _POLLS_RE.findall(text))


# -- the measurements -------------------------------------------------------------------------


def run_baseline(fleet: FakeFleetProc, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """One run of the gather script; wall time from Popen to its answer line."""
    cmd = [
        PYTHON, "-m", "bench.baseline_gather", "--port-file", str(fleet.port_file),
        "--concurrency", str(args.concurrency), "--timeout", str(args.timeout), *extra,
    ]  # fmt: skip
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.monotonic() - started
    result: dict[str, Any] = json.loads(line)
    result["wall_seconds"] = elapsed
    result["loadavg_before"] = load
    more = proc.stdout.readline()  # the steady-state line, with --steady
    if more.strip():
        result |= json.loads(more)
    proc.wait()
    return result


def wait_complete(
    api: Api, proc: subprocess.Popen[Any], started: float, healthy: int, hosts: int, every: float
) -> dict[str, Any]:
    """Read the summary until every healthy host is up; then until the others are settled too."""
    out: dict[str, Any] = {}
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"fleetd exited with {proc.returncode} during start-up")
        try:
            summary = api.json("/api/v1/summary")
        except OSError:
            summary = None  # not listening yet
        now = time.monotonic() - started
        if summary is not None:
            out.setdefault("listening_seconds", now)
            by_state = summary["hosts"]["by_state"]
            if "complete_seconds" not in out and by_state["up"] >= healthy:
                out["complete_seconds"] = now
                out["containers"] = summary["containers"]["total"]
            settled = by_state["up"] + by_state["down"] + by_state["error"]
            if "complete_seconds" in out and settled >= hosts:
                out["settled_seconds"] = now
                return out
        if now > 600:
            raise RuntimeError(f"no complete view after 600 s: {summary and summary['hosts']}")
        time.sleep(every)


def steady_state(api: Api, pid: int, fleet_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    polls0 = api.polls()
    cpu0, fleet_cpu0, t0 = cpu_seconds(pid), cpu_seconds(fleet_pid), time.monotonic()
    time.sleep(args.window)
    cpu1, fleet_cpu1, t1 = cpu_seconds(pid), cpu_seconds(fleet_pid), time.monotonic()
    load = os.getloadavg()[0]
    polls1 = api.polls()
    polls = polls1 - polls0
    cpu = cpu1 - cpu0
    return {
        "window_seconds": t1 - t0,
        "polls": polls,
        "polls_per_second": polls / (t1 - t0),
        "cpu_seconds": cpu,
        "cpu_ms_per_poll": 1000 * cpu / polls if polls else float("nan"),
        "cpu_share": cpu / (t1 - t0),
        "fake_fleet_cpu_share": (fleet_cpu1 - fleet_cpu0) / (t1 - t0),
        "rss_kib": status_kib(pid, "VmRSS"),
        "hwm_kib": status_kib(pid, "VmHWM"),
        "rss_kib_per_host": status_kib(pid, "VmRSS") / args.hosts,
        "open_fds": open_fds(pid),
        "loadavg_1min_at_end": load,
    }


def freshness(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """Ages of answering hosts' last_seen, sampled over a window (hung hosts left out)."""
    ages: list[float] = []
    states: dict[str, int] = {}
    end = time.monotonic() + args.ages_window
    samples = 0
    while time.monotonic() < end:
        hosts = api.json("/api/v1/hosts")["hosts"]
        now = time.time()
        samples += 1
        states = {}
        for h in hosts:
            states[h["state"]] = states.get(h["state"], 0) + 1
            if h["state"] == "up" or (h["last_seen"] and h["consecutive_failures"] == 0):
                ages.append(now - parse_rfc3339(h["last_seen"]))
        time.sleep(args.ages_every)
    ages.sort()
    bound = args.interval + args.timeout
    return {
        "samples": samples,
        "ages_max": ages[-1] if ages else float("nan"),
        "ages_p99": ages[int(0.99 * (len(ages) - 1))] if ages else float("nan"),
        "ages_p50": ages[len(ages) // 2] if ages else float("nan"),
        "bound": bound,
        "within_bound": bool(ages) and ages[-1] <= bound,
        "states": states,
    }


def run_fleetd(fleet: FakeFleetProc, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    listen = free_port()
    config = workdir / "fleetd.yaml"
    write_config(config, args, fleet.ports, listen)
    fleetd = [str(Path(PYTHON).parent / "fleetd")]
    if args.profile == "cprofile":
        fleetd = [PYTHON, "-m", "cProfile", "-o", str(workdir / "fleetd.prof"), "-m", "fleetd"]
    log = open(workdir / "fleetd.log", "w")  # noqa: SIM115 - closed below
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen([*fleetd, "run", "--config", str(config)], cwd=workdir, stdout=log, stderr=log)
    api = Api(listen)
    spy: subprocess.Popen[Any] | None = None
    try:
        healthy = args.hosts - fleet.hanging
        result: dict[str, Any] = {"listen_port": listen, "loadavg_before": load}
        result |= wait_complete(api, proc, started, healthy, args.hosts, args.api_poll)
        print(f"  fleetd: complete view after {result['complete_seconds']:.2f}s", flush=True)
        time.sleep(args.settle)
        if args.profile == "py-spy":
            spy = subprocess.Popen(
                [shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy"), "record", "-r", "200", "-f", "raw", "-d", str(int(args.window)),
                 "-o", str(workdir / "steady.raw"), "--pid", str(proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        result["steady"] = steady_state(api, proc.pid, fleet.proc.pid, args)
        print(f"  fleetd: {result['steady']['cpu_ms_per_poll']:.3f} CPU ms/poll", flush=True)
        result["freshness"] = freshness(api, args)
    finally:
        if spy is not None:
            spy.wait()
        result_rc = stop(proc)
        log.close()
    result["exit_code"] = result_rc
    for name in ("fleetd.prof", "steady.raw"):
        if (workdir / name).exists():
            dest = RESULTS / f"{args.stamp}-{name}"
            shutil.copy(workdir / name, dest)
            result.setdefault("profiles", []).append(str(dest.relative_to(ROOT)))
    return result


# -- report -----------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    a = r["args"]
    f = r["fleetd"]
    s, fr = f["steady"], f["freshness"]
    plain = "-"
    if r.get("baseline_steady") and r.get("baseline_transport"):
        plain = (
            f"{r['baseline_steady']['steady_cpu_ms_per_poll']:.3f} decoded, "
            f"{r['baseline_transport']['steady_cpu_ms_per_poll']:.3f} transport only"
        )
    rows = [
        (
            "hosts / containers each / latency",
            f"{a['hosts']} / {a['containers']} / {a['latency'] * 1000:g} ms",
        ),
        ("hanging hosts", f"{r['hanging']}"),
        (
            "fleetd interval / timeout / concurrency",
            f"{a['interval']}s / {a['timeout']}s / {a['concurrency']}",
        ),
    ]
    if r["baseline"]:
        walls = ", ".join(f"{b['wall_seconds']:.2f}" for b in r["baseline"])
        best = r["baseline_best"]
        rows += [
            ("baseline gather, process start → data (s)", walls),
            ("  of which fetch only (s)", ", ".join(f"{b['fetch_seconds']:.2f}" for b in r["baseline"])),
            ("fleetd, process start → all up (s)", f"{f['complete_seconds']:.2f}"),
            ("ratio fleetd / best baseline (goal ≤ 1.2)", f"{f['complete_seconds'] / best:.2f}"),
        ]
        if r["baseline_images"]:
            walls = ", ".join(f"{b['wall_seconds']:.2f}" for b in r["baseline_images"])
            best_i = min(b["wall_seconds"] for b in r["baseline_images"])
            rows += [
                ("baseline + /images/json like fleetd (s)", walls),
                ("ratio fleetd / that baseline", f"{f['complete_seconds'] / best_i:.2f}"),
            ]
    else:
        rows.append(("fleetd, process start → healthy hosts up (s)", f"{f['complete_seconds']:.2f}"))
    rows += [
        ("fleetd, process start → every host settled (s)", f"{f['settled_seconds']:.2f}"),
        ("steady window (s) / polls / polls per s", f"{s['window_seconds']:.0f} / {s['polls']:.0f} / "
                                                    f"{s['polls_per_second']:.1f}"),
        ("CPU ms per host poll (goal ≤ 0.5)", f"{s['cpu_ms_per_poll']:.3f}"),
        ("  plain aiohttp poller, same requests", plain),
        ("fleetd CPU share / fake fleet CPU share", f"{s['cpu_share']:.1%} / {s['fake_fleet_cpu_share']:.1%}"),
        ("VmRSS (MiB) / per host (KiB)", f"{s['rss_kib'] / 1024:.1f} / {s['rss_kib_per_host']:.1f}"),
        ("open fds", f"{s['open_fds']}"),
        ("last_seen age of answering hosts: max / p99 (s)", f"{fr['ages_max']:.2f} / {fr['ages_p99']:.2f}"),
        ("  bound interval + timeout (s) / within", f"{fr['bound']:g} / {fr['within_bound']}"),
        ("host states at the end", ", ".join(f"{k} {v}" for k, v in sorted(fr["states"].items()))),
    ]  # fmt: skip
    rows.append(
        (
            "1-min load average: start / steady end",
            f"{f['loadavg_before']:.1f} / {s['loadavg_1min_at_end']:.1f}",
        )
    )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fleet_bench", description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--latency", type=float, default=0.05, help="seconds the fake engines add per answer")
    p.add_argument("--hang-fraction", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval", type=float, default=15.0, help="fleetd poll.interval, seconds")
    p.add_argument("--timeout", type=float, default=5.0, help="fleetd poll.timeout, seconds")
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--baseline-runs", type=int, default=2, help="gather runs before fleetd (0: none)")
    p.add_argument("--baseline-images-runs", type=int, default=1, help="gather runs with /images/json too")
    p.add_argument(
        "--baseline-steady",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after fleetd, a plain aiohttp poller's CPU per poll over the same window",
    )
    p.add_argument("--api-poll", type=float, default=0.05, help="seconds between summary reads")
    p.add_argument("--settle", type=float, default=15.0, help="seconds after the complete view")
    p.add_argument("--window", type=float, default=60.0, help="steady-state window, seconds")
    p.add_argument("--ages-window", type=float, default=40.0)
    p.add_argument("--ages-every", type=float, default=2.0)
    p.add_argument("--profile", choices=("none", "py-spy", "cprofile"), default="none")
    p.add_argument("--label", default="", help="a word added to the results file name")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    variant = f"h{args.hosts}-hang{args.hang_fraction:g}" + (f"-{args.label}" if args.label else "")
    args.stamp = time.strftime("%Y%m%dT%H%M%S") + "-" + variant
    report: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "stamp"}}
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp, fake_fleet(args, Path(tmp)) as fleet:
        workdir = Path(tmp)
        report["hanging"] = fleet.hanging
        print(f"fake fleet: {len(fleet.ports)} engines, {fleet.hanging} hanging (pid {fleet.proc.pid})")
        healthy = fleet.hanging == 0  # a gather would wait out every hang
        report["baseline"] = [run_baseline(fleet, args) for _ in range(args.baseline_runs if healthy else 0)]
        report["baseline_images"] = [
            run_baseline(fleet, args, "--images") for _ in range(args.baseline_images_runs if healthy else 0)
        ]
        for b in report["baseline"] + report["baseline_images"]:
            print(f"  baseline: {b['wall_seconds']:.2f}s ({b['hosts_ok']}/{b['hosts']} hosts)", flush=True)
        if report["baseline"]:
            report["baseline_best"] = min(b["wall_seconds"] for b in report["baseline"])
        report["fleetd"] = run_fleetd(fleet, args, workdir)
        if report["baseline"]:
            report["ratio"] = report["fleetd"]["complete_seconds"] / report["baseline_best"]
        if args.baseline_steady and healthy:
            steady = [
                "--steady",
                str(args.window),
                "--settle",
                str(args.settle),
                "--interval",
                str(args.interval),
            ]
            for key, extra in (("baseline_steady", "--decode"), ("baseline_transport", "--no-decode")):
                report[key] = run_baseline(fleet, args, *steady, extra)
                print(
                    f"  plain aiohttp poller {extra}: {report[key]['steady_cpu_ms_per_poll']:.3f} CPU ms/poll"
                )
    out = RESULTS / f"fleet-{args.stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
