"""One shared connection pool for all hosts (fleetd) versus one ClientSession per host (naive code).

Run from the repository root::

    python -m bench.connector_bench --hosts 1000 --latency 0.05 --rounds 6 --repeat 2

It starts ``bench.fake_fleet`` in a process of its own, then runs each mode in a fresh process
(``--repeat`` times, alternating), polling every host once per round the way fleetd's poller does
(``/info`` and ``/containers/json?all=1`` concurrently per host, at most ``--concurrency`` hosts at
once, typed decoding), through fleetd's own Engine client:

- ``shared``: one :class:`~fleetd.dockerapi.EngineConnections` (one TCP connector) for every host;
- ``per-host``: ``DockerClient(url)`` without shared connections, so each host opens its own
  ``aiohttp.ClientSession`` with its own connector;
- ``per-poll``: the anti-pattern for reference, a new client (session) for every poll, so no
  connection is ever reused (the API version is passed in, so it still makes two requests).

Per mode: wall time and CPU time of the first round (connections opened, API version negotiated)
and of the later rounds (keep-alive), open file descriptors and VmRSS after the rounds (and the
RSS the process had before it created any client). Results: a table, and
``bench/results/connector-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MODES = ("shared", "per-host", "per-poll")


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _measure(
    mode: str, ports: list[int], rounds: int, concurrency: int, pause: float
) -> dict[str, Any]:
    from fleetd.dockerapi import DockerClient, EngineConnections

    rss_before = _rss_kib()
    fds_before = _fds()
    connections = EngineConnections(keepalive=120.0) if mode == "shared" else None
    clients = [DockerClient(f"tcp://127.0.0.1:{p}", connections=connections) for p in ports]
    slots = asyncio.Semaphore(concurrency)

    async def poll(client: DockerClient) -> None:
        async with slots:
            if mode == "per-poll" and client.api_version is not None:
                async with DockerClient(client.url, api_version=client.api_version) as once:
                    await asyncio.gather(once.system.info_raw(), once.containers.list(all=True))
                return
            await asyncio.gather(client.system.info_raw(), client.containers.list(all=True))

    per_round: list[dict[str, float]] = []
    try:
        for _ in range(rounds):
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(poll(c) for c in clients))
            per_round.append({"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0})
            if mode == "per-poll" and len(per_round) == 1:
                for c in clients:  # they negotiated the version; from now on every poll has its own
                    await c.aclose()
            await asyncio.sleep(pause)
        rss_after, fds_after = _rss_kib(), _fds()
    finally:
        for c in clients:
            await c.aclose()
        if connections is not None:
            await connections.aclose()
    warm = per_round[1:]
    return {
        "mode": mode,
        "hosts": len(ports),
        "rounds": per_round,
        "first_round_seconds": per_round[0]["seconds"],
        "first_round_cpu_seconds": per_round[0]["cpu_seconds"],
        "warm_round_seconds": statistics.median(r["seconds"] for r in warm) if warm else None,
        "warm_round_cpu_seconds": statistics.median(r["cpu_seconds"] for r in warm) if warm else None,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "fds_before": fds_before,
        "fds_after": fds_after,
    }


def _worker(args: argparse.Namespace) -> int:
    """One mode in this process; prints one JSON line."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ports = [int(p) for p in args.port_file.read_text().split()]
    result = asyncio.run(_measure(args.mode, ports, args.rounds, args.concurrency, args.pause))
    print(json.dumps(result), flush=True)
    return 0


def _run_mode(mode: str, port_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "bench.connector_bench", "--mode", mode, "--port-file", str(port_file),
        "--rounds", str(args.rounds), "--concurrency", str(args.concurrency), "--pause", str(args.pause),
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def _table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'mode':9} {'round 1 s':>9} {'round 1 CPU s':>13} {'later round s':>13} {'later CPU s':>11} "
        f"{'fds':>6} {'RSS MiB':>8} {'RSS +MiB':>8}"
    )
    lines = [head]
    for r in results:
        lines.append(
            f"{r['mode']:9} {r['first_round_seconds']:9.2f} {r['first_round_cpu_seconds']:13.2f} "
            f"{r['warm_round_seconds']:13.2f} {r['warm_round_cpu_seconds']:11.2f} {r['fds_after']:6d} "
            f"{r['rss_kib_after'] / 1024:8.1f} {(r['rss_kib_after'] - r['rss_kib_before']) / 1024:8.1f}"
        )
    return "\n".join(lines)


def _orchestrate(args: argparse.Namespace) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="connector-bench-") as tmp:
        port_file = Path(tmp) / "ports.txt"
        fleet = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_fleet", "--hosts", str(args.hosts), "--latency", str(args.latency),
             "--containers", str(args.containers), "--port-file", str(port_file)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert fleet.stdout is not None
            ready = fleet.stdout.readline()
            if not ready.startswith("READY"):
                raise RuntimeError(f"fake fleet did not start: {ready!r}")
            modes = [m for m in MODES if m in args.modes.split(",")]
            for i in range(args.repeat):
                for mode in modes if i % 2 == 0 else modes[::-1]:
                    r = _run_mode(mode, port_file, args)
                    r["loadavg_before"] = os.getloadavg()[0]
                    print(
                        f"  {mode}: round 1 {r['first_round_seconds']:.2f}s, later {r['warm_round_seconds']:.2f}s"
                    )
                    results.append(r)
        finally:
            fleet.terminate()
            fleet.wait(15)
    results.sort(key=lambda r: MODES.index(r["mode"]))
    print(
        f"{args.hosts} hosts, {args.containers} containers each, {args.latency * 1000:g} ms latency, "
        f"concurrency {args.concurrency}, {args.rounds} rounds ({args.pause:g}s apart), CPU of the client process"
    )
    print(_table(results))
    out = RESULTS / f"connector-{time.strftime('%Y%m%dT%H%M%S')}-h{args.hosts}.json"
    out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
    )
    print(f"results: {out.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.connector_bench", description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--containers", type=int, default=40)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument(
        "--rounds", type=int, default=6, help="polling rounds per mode (the first opens connections)"
    )
    p.add_argument("--pause", type=float, default=1.0, help="seconds between rounds")
    p.add_argument("--repeat", type=int, default=2, help="runs of each mode, alternating")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # internal: one mode in this process
    p.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return _worker(args) if args.mode else _orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
