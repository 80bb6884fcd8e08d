"""Serve a simulated fleet of fake Docker Engines, one loopback port each, from one process.

Run from the repository root::

    python -m bench.fake_fleet --hosts 1000 --port-file /tmp/ports --latency 0.05 --hang-fraction 0.1
    python -m bench.fake_fleet --hosts 1000 --base-port 20000

With ``--port-file`` the kernel picks the ports (preferred) and they are written one per line, in host
order; either way a ``READY ...`` line on stdout says every port is listening. Stop with SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.fakes import Endpoint, EngineBehaviour, FakeFleet, Fault

__all__ = ["build_parser", "main", "raise_nofile_limit", "serve"]

EPHEMERAL_START = 32768  # Linux hands out 32768-60999 to outgoing connections


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=1000, help="number of fake engines (default 1000)")
    parser.add_argument("--containers", type=int, default=40, help="containers per engine (default 40)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--hang-fraction", type=float, default=0.0, help="share of hosts that never answer")
    parser.add_argument("--error-fraction", type=float, default=0.0, help="share of hosts answering 500")
    parser.add_argument("--api-version", default="1.47", help="Engine API version the fakes speak")
    parser.add_argument("--seed", type=int, default=0, help="seed for containers and for who hangs")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--base-port", type=int, help="listen on BASE .. BASE+hosts-1 (below 32768)")
    parser.add_argument("--port-file", type=Path, help="let the kernel pick ports; write them here")
    parser.add_argument("--duration", type=float, help="exit after this many seconds (default: run)")
    parser.add_argument(
        "--churn", type=float, default=0.0,
        help="container changes per second across the fleet (each publishes its Engine events; the "
        "container's label bench.changed_at holds the wall-clock time of the change)",
    )  # fmt: skip
    return parser


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _write_ports(path: Path, ports: Sequence[int]) -> None:
    """Atomically, so a reader polling for the file never sees half of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{port}\n" for port in ports))
    os.replace(tmp, path)


def request_counts(fleet: FakeFleet) -> dict[str, int]:
    """Requests served so far, by kind (what a client's CPU goes into)."""
    counts = {"ping": 0, "info": 0, "list": 0, "targeted": 0, "events": 0, "other": 0}
    for engine in fleet.engines:
        for _method, path in engine.requests:
            if path.endswith("/_ping"):
                counts["ping"] += 1
            elif "/containers/json" in path:
                counts["targeted" if "filters=" in path else "list"] += 1
            elif path.endswith("/info"):
                counts["info"] += 1
            elif "/events" in path:
                counts["events"] += 1
            else:
                counts["other"] += 1
    return counts


def _behaviours(args: argparse.Namespace) -> list[EngineBehaviour]:
    rng = random.Random(args.seed)
    hosts = list(range(args.hosts))
    hanging = set(rng.sample(hosts, round(args.hosts * args.hang_fraction)))
    failing = set(rng.sample([h for h in hosts if h not in hanging], round(args.hosts * args.error_fraction)))
    behaviours = []
    for i in hosts:
        faults: dict[Endpoint, Fault] = {}
        if i in hanging:
            faults["*"] = Fault.HANG
        elif i in failing:
            faults["*"] = Fault.STATUS_500
        behaviours.append(
            EngineBehaviour(
                api_version=args.api_version,
                containers=args.containers,
                seed=args.seed * 1_000_003 + i,
                engine_id=f"fake-{args.seed}-{i:05d}",
                hostname=f"fake-{i:05d}",
                latency=args.latency,
                faults=faults,
            )
        )
    return behaviours


async def _churn(fleet: FakeFleet, rate: float, seed: int) -> None:
    """Change ``rate`` containers per second: a running one dies, an exited one starts."""
    rng = random.Random(seed + 17)
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        due += 1.0 / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        engine = rng.choice(fleet.engines)
        if not engine.state.containers or engine.behaviour.fault_for("*") is not None:
            continue
        container = rng.choice(list(engine.state.containers.values()))
        container.labels["bench.changed_at"] = repr(time.time())
        if container.state == "running":
            engine.set_state(container.id, "exited", 137)
        else:
            engine.set_state(container.id, "running")


async def serve(args: argparse.Namespace) -> int:
    started = time.monotonic()
    behaviours = _behaviours(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FakeFleet(
        len(behaviours), behaviours.__getitem__, host=args.host, base_port=args.base_port
    ) as fleet:
        if args.port_file is not None:
            _write_ports(args.port_file, fleet.ports)
        elapsed = time.monotonic() - started
        hanging = sum(b.fault_for("*") is Fault.HANG for b in behaviours)
        print(
            f"READY hosts={len(fleet.engines)} ports={min(fleet.ports)}-{max(fleet.ports)} hanging={hanging} "
            f"startup={elapsed:.2f}s rss={rss_mib():.0f}MiB pid={os.getpid()}",
            flush=True,
        )
        # SIGUSR1: one COUNTS line (requests served so far, by kind) on stdout, for a bench's window
        loop.add_signal_handler(
            signal.SIGUSR1,
            lambda: print(
                "COUNTS " + " ".join(f"{k}={v}" for k, v in request_counts(fleet).items()), flush=True
            ),
        )
        churn = asyncio.create_task(_churn(fleet, args.churn, args.seed)) if args.churn > 0 else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
        if churn is not None:
            churn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await churn
        served = sum(len(engine.requests) for engine in fleet.engines)
        print(f"STOPPING requests={served} rss={rss_mib():.0f}MiB", flush=True)
        stopping = time.monotonic()
    print(f"STOPPED in {time.monotonic() - stopping:.2f}s", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.base_port is None and args.port_file is None:
        parser.error("give --port-file (kernel-chosen ports, preferred) or --base-port")
    if args.base_port is not None and not 1024 <= args.base_port <= EPHEMERAL_START - args.hosts:
        parser.error(f"--base-port .. base+hosts-1 must lie in 1024..{EPHEMERAL_START - 1}")
    try:
        if not ipaddress.ip_address(args.host).is_loopback:
            parser.error(f"--host must be a loopback address, not {args.host}")
    except ValueError:
        parser.error(f"--host must be an IP address, not {args.host!r}")
    if not 0 <= args.hang_fraction + args.error_fraction <= 1:
        parser.error("--hang-fraction + --error-fraction must be within 0..1")
    soft, _hard = raise_nofile_limit()
    if soft < 2 * args.hosts + 64:
        print(f"warning: open-file limit {soft} is low for {args.hosts} hosts", file=sys.stderr)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
