"""Engine events + a 60 s poll against pure polling at 15 s, on one simulated fleet, side by side.

Run from the repository root::

    python -m bench.live_bench --hosts 1000 --churn 20 --window 60 --subscribers 1000

For each mode a fresh ``bench.fake_fleet`` (with ``--churn``: that many container changes per
second across the fleet, each publishing its Engine events and stamping the container's label
``bench.changed_at`` with the wall-clock time of the change) and a fresh ``fleetd run``:

* ``polling``: ``events: false``, ``poll.interval`` = ``--poll-interval`` (15 s), today's fleetd;
* ``events``: ``events: true``, ``poll.interval`` = ``--events-interval`` (60 s), liveness 15 s.

After the complete view and ``--settle`` seconds, over ``--window`` seconds: fleetd's CPU share
of one core (utime + stime from /proc) and RSS, and the latency from each change on a fake
Engine to its ``container.changed`` frame on an SSE client (now − ``bench.changed_at`` when the
frame arrives; same machine, same clock). Then, in the events mode, ``--subscribers`` SSE clients
connect; fleetd's RSS per subscriber and the age of healthy hosts' ``last_seen`` are measured
while they stay connected and the fleet keeps changing.

Results go to stdout and to ``bench/results/live-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.fleet_bench import (
    PYTHON,
    RESULTS,
    ROOT,
    Api,
    FakeFleetProc,
    cpu_seconds,
    free_port,
    freshness,
    status_kib,
    stop,
    wait_complete,
)

__all__ = ["main"]


@dataclass
class Fleets:
    """The fake fleet, served by ``--fleets`` processes (each has its own open-file limit)."""

    procs: list[FakeFleetProc]

    @property
    def ports(self) -> list[int]:
        return [p for f in self.procs for p in f.ports]

    @property
    def hanging(self) -> int:
        return sum(f.hanging for f in self.procs)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(f.proc.pid) for f in self.procs)

    def request_counts(self) -> dict[str, int]:
        """Requests served so far, by kind (each fake fleet's SIGUSR1 answer), summed."""
        total: dict[str, int] = {}
        for f in self.procs:
            assert f.proc.stdout is not None
            f.proc.send_signal(signal.SIGUSR1)
            while True:
                line = f.proc.stdout.readline()
                if not line:
                    raise RuntimeError("a fake fleet ended")
                if line.startswith("COUNTS "):
                    for k, v in (kv.split("=") for kv in line.split()[1:]):
                        total[k] = total.get(k, 0) + int(v)
                    break
        return total


@contextmanager
def churning_fleet(args: argparse.Namespace, workdir: Path) -> Iterator[Fleets]:
    n = max(1, args.fleets)
    sizes = [args.hosts // n + (1 if k < args.hosts % n else 0) for k in range(n)]
    procs: list[subprocess.Popen[str]] = []
    fleets: list[FakeFleetProc] = []
    try:
        for k, size in enumerate(sizes):
            port_file = workdir / f"ports-{k}.txt"
            cmd = [
                PYTHON, "-m", "bench.fake_fleet", "--hosts", str(size), "--containers", str(args.containers),
                "--seed", str(args.seed + 1000 * k), "--port-file", str(port_file),
                "--churn", str(args.churn * size / args.hosts),
            ]  # fmt: skip
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True))
        for proc, k in zip(procs, range(n), strict=True):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"fake fleet {k} did not start: {line!r}")
            hanging = int(re.search(r"hanging=(\d+)", line).group(1))  # type: ignore[union-attr]
            port_file = workdir / f"ports-{k}.txt"
            fleets.append(
                FakeFleetProc(proc, [int(p) for p in port_file.read_text().split()], port_file, hanging)
            )
        yield Fleets(fleets)
    finally:
        for proc in procs:
            stop(proc)


#: The service unit's LimitNOFILE (deploy/): fleetd and the fake fleets run with it when the machine allows.
SERVICE_NOFILE = 65_536


def raise_open_files(want: int = SERVICE_NOFILE) -> tuple[int, int]:
    """Lift this process's open-file limit (inherited by the fake fleets and fleetd) to what the
    service runs with: the hard limit too when permitted (root), else the soft one up to the hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def own_ping_connection(args: argparse.Namespace) -> bool:
    """Whether each host's liveness ping gets a connection of its own: per host fleetd then holds
    two poll connections, the event stream and the ping's, which must fit its open-file limit."""
    if args.ping_connection != "auto":
        return bool(args.ping_connection == "own")
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 4 * args.hosts + args.subscribers + 500 <= soft


def write_config(path: Path, args: argparse.Namespace, ports: list[int], listen: int, events: bool) -> None:
    interval = args.events_interval if events else args.poll_interval
    lines = [
        f"listen: 127.0.0.1:{listen}",
        "poll:",
        f"  interval: {interval}s",
        f"  timeout: {args.timeout}s",
        "  liveness: 15s",
        "snapshots: {enabled: false}",
        "auth: {anonymous_read: true}",
        "log: {level: info, format: json}",
        f"events: {{enabled: {str(events).lower()}, max_subscribers: {args.subscribers + 10}, "
        f"ping_connection: {str(own_ping_connection(args)).lower()}}}",
        # every SSE client of the bench comes from 127.0.0.1: lift the per-address connection cap
        f"listener: {{max_per_client: {args.subscribers + 100}, max_connections: {args.subscribers + 500}}}",
        "hosts:",
    ]
    lines += [f"  - {{name: h{i:05d}, url: 'tcp://127.0.0.1:{p}'}}" for i, p in enumerate(ports)]
    path.write_text("\n".join(lines) + "\n")


class SseClients:
    """SSE clients in a thread of their own (their own event loop), so they cost fleetd nothing."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.frames = 0
        self.sub_frames: list[int] = []
        self.recording = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Future[None]] = []

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session

    async def _read(self, index: int | None) -> None:
        session = await self._session_get()
        url = f"http://127.0.0.1:{self.port}/api/v1/events?type=container.changed"
        async with session.get(url) as resp:
            if resp.status != 200:
                raise RuntimeError(f"SSE: {resp.status} {await resp.text()}")
            event = ""
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "container.changed":
                    if index is not None:
                        self.sub_frames[index] += 1
                        continue
                    self.frames += 1
                    if self.recording:
                        data = json.loads(line[6:])
                        stamp = data["container"]["labels"].get("bench.changed_at")
                        if stamp and "state" in data.get("fields", ()):
                            self.latencies.append(time.time() - float(stamp))

    def start_latency_client(self) -> None:
        self._tasks.append(asyncio.run_coroutine_threadsafe(self._read(None), self._loop))

    def start_subscribers(self, n: int) -> None:
        self.sub_frames = [0] * n

        async def start() -> None:
            for i in range(n):
                self._tasks.append(asyncio.ensure_future(self._read(i)))
                if i % 100 == 99:
                    await asyncio.sleep(0.05)

        self._run(start())

    def close(self) -> None:
        async def shut() -> None:
            for t in self._tasks:
                t.cancel()
            await asyncio.sleep(0.1)
            if self._session is not None:
                await self._session.close()

        self._run(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def fleetd_command(mode: str, config: Path) -> tuple[list[str], dict[str, str] | None]:
    """``events@DIR`` runs the fleetd source tree in DIR (an older commit's checkout: A/B runs)."""
    _name, at, src = mode.partition("@")
    if not at:
        return [str(Path(PYTHON).parent / "fleetd"), "run", "--config", str(config)], None
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    return [PYTHON, "-c", "from fleetd.cli import main; main()", "run", "--config", str(config)], env


def run_mode(
    mode: str, args: argparse.Namespace, together: threading.Barrier | None = None
) -> dict[str, Any]:
    events = mode.partition("@")[0] == "events"
    with tempfile.TemporaryDirectory(prefix=f"fleetd-live-{mode.partition('@')[0]}-") as tmp:
        workdir = Path(tmp)
        with churning_fleet(args, workdir) as fleet:
            listen = free_port()
            config = workdir / "fleetd.yaml"
            write_config(config, args, fleet.ports, listen, events)
            log = open(workdir / "fleetd.log", "w")  # noqa: SIM115 - closed below
            started = time.monotonic()
            command, env = fleetd_command(mode, config)
            proc = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=log, env=env)
            api = Api(listen)
            clients = SseClients(listen)
            out: dict[str, Any] = {
                "mode": mode,
                "interval": args.events_interval if events else args.poll_interval,
            }
            try:
                out |= wait_complete(api, proc, started, args.hosts - fleet.hanging, args.hosts, 0.5)
                out["fleetd_open_files"] = len(os.listdir(f"/proc/{proc.pid}/fd"))
                print(f"  {mode}: complete view after {out['complete_seconds']:.1f}s", flush=True)
                clients.start_latency_client()
                time.sleep(args.settle)
                if together is not None:  # --together: every mode measures the same window
                    together.wait(timeout=600)
                clients.recording = True
                counts0 = fleet.request_counts()
                cpu0, fcpu0, t0 = cpu_seconds(proc.pid), fleet.cpu_seconds(), time.monotonic()
                profiler = start_profiler(args, mode, proc.pid)
                time.sleep(args.window)
                if profiler is not None:
                    try:
                        profiler.wait(30.0)  # it ends after --duration and writes its file
                    except subprocess.TimeoutExpired:
                        stop(profiler)
                cpu1, fcpu1, t1 = cpu_seconds(proc.pid), fleet.cpu_seconds(), time.monotonic()
                clients.recording = False
                counts1 = fleet.request_counts()
                lat = clients.latencies
                out["steady"] = {
                    "window_seconds": t1 - t0,
                    "cpu_share": (cpu1 - cpu0) / (t1 - t0),
                    "fake_fleet_cpu_share": (fcpu1 - fcpu0) / (t1 - t0),
                    "rss_kib": status_kib(proc.pid, "VmRSS"),
                    "changes_seen": len(lat),
                    "latency_p50": percentile(lat, 0.5),
                    "latency_p99": percentile(lat, 0.99),
                    "latency_max": max(lat) if lat else float("nan"),
                    "requests_per_second": {k: (counts1[k] - counts0[k]) / (t1 - t0) for k in counts1},
                }
                s = out["steady"]
                print(
                    f"  {mode}: CPU {s['cpu_share']:.3f} of a core, RSS {s['rss_kib'] / 1024:.0f} MiB, "
                    f"change→frame p50 {s['latency_p50']:.3f}s p99 {s['latency_p99']:.3f}s ({len(lat)} changes)",
                    flush=True,
                )
                rates = " ".join(f"{k} {v:.1f}" for k, v in s["requests_per_second"].items())
                print(f"  {mode}: requests/s to the fake fleet: {rates}", flush=True)
                if events and args.subscribers:
                    out["subscribers"] = subscribers_phase(proc, api, clients, args)
            finally:
                clients.close()
                out["exit_code"] = stop(proc)
                log.close()
    return out


def start_profiler(args: argparse.Namespace, mode: str, pid: int) -> subprocess.Popen[Any] | None:
    """``--profile DIR``: py-spy (a bench-only tool, ``pip install py-spy``) samples fleetd during
    the window, at a low rate so that it costs fleetd little; a speedscope file per mode."""
    if args.profile is None:
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    out = (
        args.profile
        / f"live-{mode.partition('@')[0]}{'-ab' if '@' in mode else ''}-{args.hosts}.speedscope.json"
    )
    spy = Path(PYTHON).parent / "py-spy"
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", "50", "--format", "speedscope",
           "--output", str(out), "--duration", str(int(args.window)), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def subscribers_phase(
    proc: subprocess.Popen[Any], api: Api, clients: SseClients, args: argparse.Namespace
) -> dict[str, Any]:
    """``--subscribers`` SSE clients connect; RSS per subscriber, healthy hosts' last_seen meanwhile."""
    rss0 = status_kib(proc.pid, "VmRSS")
    try:
        clients.start_subscribers(args.subscribers)
        time.sleep(args.settle)
        rss1 = status_kib(proc.pid, "VmRSS")
        ages = argparse.Namespace(
            ages_window=args.ages_window, ages_every=2.0, interval=args.events_interval, timeout=args.timeout
        )
        fresh = freshness(api, ages)
    except (OSError, RuntimeError) as exc:  # recorded, so the modes' figures are not lost
        print(f"  events: subscribers phase failed: {exc}", flush=True)
        return {"count": args.subscribers, "error": str(exc)}
    connected = sum(1 for n in clients.sub_frames if n > 0)
    print(
        f"  events: {args.subscribers} subscribers ({connected} got frames): "
        f"{(rss1 - rss0) / args.subscribers:.1f} KiB RSS each; last_seen max "
        f"{fresh['ages_max']:.1f}s (bound {fresh['bound']:.0f}s)",
        flush=True,
    )
    return {
        "count": args.subscribers,
        "receiving": connected,
        "frames_per_subscriber_min": min(clients.sub_frames, default=0),
        "rss_kib_before": rss0,
        "rss_kib_after": rss1,
        "rss_kib_per_subscriber": (rss1 - rss0) / args.subscribers,
        "last_seen": fresh,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.live_bench", description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--churn", type=float, default=20.0, help="container changes per second, fleet-wide")
    p.add_argument("--poll-interval", type=float, default=15.0)
    p.add_argument("--events-interval", type=float, default=60.0)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--settle", type=float, default=20.0)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--ages-window", type=float, default=70.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fleets", type=int, default=1, help="fake fleet processes sharing the hosts")
    p.add_argument(
        "--ping-connection", choices=("auto", "own", "shared"), default="auto",
        help="events mode: the liveness ping's connection (auto: shared when 4 connections per host "
        "would not fit fleetd's open-file limit)",
    )  # fmt: skip
    p.add_argument("--modes", default="polling,events")
    p.add_argument(
        "--together", action="store_true",
        help="run the modes at the same time, measured over one window (a ratio robust to the load "
        "other processes put on the machine)",
    )  # fmt: skip
    p.add_argument("--profile", type=Path, help="write a py-spy profile of fleetd's window per mode here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    soft, _hard = raise_open_files()
    print(f"open-file limit: {soft}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    modes = args.modes.split(",")
    if args.together:
        barrier = threading.Barrier(len(modes))
        with ThreadPoolExecutor(len(modes)) as pool:
            runs = list(pool.map(lambda m: run_mode(m, args, barrier), modes))
    else:
        runs = [run_mode(m, args) for m in modes]
    results = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": runs}
    runs = {r["mode"]: r for r in results["runs"]}
    if "polling" in runs:
        for mode, run in runs.items():
            if mode.startswith("events"):
                ratio = runs["polling"]["steady"]["cpu_share"] / max(run["steady"]["cpu_share"], 1e-9)
                results[f"cpu_ratio_polling_over_{mode}"] = ratio
                print(
                    f"CPU: polling at {args.poll_interval:g}s / {mode} + {args.events_interval:g}s poll = {ratio:.2f}x"
                )
    out = RESULTS / f"live-{stamp}-{args.hosts}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
