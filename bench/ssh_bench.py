"""CPU per poll over SSH (``ssh://``, a stream-local channel to the socket) versus plain TCP, same dockerd.

Run from the repository root, as root (it starts its own dockerd and sshd on loopback)::

    python -m bench.ssh_bench --containers 40 --polls 300 --repeat 3

One dockerd (``--host unix://... --host tcp://127.0.0.1:PORT``) with ``--containers`` containers and one
sshd (lab_sshd.py: its own host key, an authorized ed25519 key, AES-GCM/ChaCha20 as negotiated) that
forwards to that daemon's unix socket. In one process, alternating ``--repeat`` times, each mode polls
the daemon ``--polls`` times the way fleetd's poller does (``/info`` and ``/containers/json?all=1``
concurrently, typed decoding) through fleetd's own Engine client, with one warm-up poll first (the SSH
login and the API version negotiation are not counted):

- ``tcp``: ``tcp://127.0.0.1:PORT`` (keep-alive TCP connections);
- ``ssh``: ``ssh://root@127.0.0.1:SSHPORT`` (one SSH connection, keep-alive channels).

Per mode: fleetd's CPU per poll (``time.process_time``), wall time per poll, and for ``ssh`` the CPU
the sshd session process spent (the remote host's share, from /proc). Results: a table, and
``bench/results/ssh-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _proc_cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


async def _measure(mode: str, url: str, ssh: Any, polls: int, sshd: Any) -> dict[str, float]:
    from fleetd.dockerapi import DockerClient, EngineConnections

    async with EngineConnections(keepalive=120.0) as connections:
        client = DockerClient(url, ssh=ssh, connections=connections)

        async def poll() -> None:
            await asyncio.gather(client.system.info_raw(), client.containers.list(all=True))

        await poll()  # warm-up: login, version negotiation, pooled connections
        remote_before = _proc_cpu_seconds(sshd.session_pids()) if mode == "ssh" else 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(polls):
            await poll()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        remote = _proc_cpu_seconds(sshd.session_pids()) - remote_before if mode == "ssh" else 0.0
    return {
        "cpu_ms_per_poll": cpu / polls * 1000,
        "wall_ms_per_poll": wall / polls * 1000,
        "sshd_cpu_ms_per_poll": remote / polls * 1000,
    }


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    import structlog

    from fleetd.dockerapi import SSHOptions
    from tests.integration.lab_daemon import Daemon
    from tests.integration.lab_image import BUSYBOX_IMAGE, busybox_rootfs_tar
    from tests.integration.lab_os import free_port
    from tests.integration.lab_sshd import Sshd

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    root = Path(tempfile.mkdtemp(prefix="fl-sshb-", dir="/tmp"))
    daemon = Daemon("bench", "docker", root / "d", free_port(random.Random()), {})
    sshd = None
    try:
        daemon.start()
        daemon.populate(busybox_rootfs_tar())
        for i in range(args.containers):
            daemon.docker("create", "--network", "none", "--label", f"bench={i}", BUSYBOX_IMAGE, "true")
        sshd = Sshd.start(root / "sshd")
        options = SSHOptions(identity=sshd.client_key, known_hosts=sshd.known_hosts, socket=str(daemon.unix_path))
        runs: dict[str, list[dict[str, float]]] = {"tcp": [], "ssh": []}
        for _ in range(args.repeat):
            for mode in ("tcp", "ssh"):
                url, ssh = (daemon.tcp_url, None) if mode == "tcp" else (sshd.url(), options)
                runs[mode].append(asyncio.run(_measure(mode, url, ssh, args.polls, sshd)))
        logins = sshd.accepted_connections()
    finally:
        if sshd is not None:
            sshd.close()
        daemon.destroy()
        shutil.rmtree(root, ignore_errors=True)
    med = {
        mode: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for mode, rs in runs.items()
    }
    return {
        "containers": args.containers,
        "polls": args.polls,
        "repeat": args.repeat,
        "runs": runs,
        "median": med,
        "cpu_ratio_ssh_over_tcp": med["ssh"]["cpu_ms_per_poll"] / med["tcp"]["cpu_ms_per_poll"],
        "wall_ratio_ssh_over_tcp": med["ssh"]["wall_ms_per_poll"] / med["tcp"]["wall_ms_per_poll"],
        "ssh_logins": logins,
        "commit": os.popen(f"git -C {ROOT} rev-parse --short HEAD").read().strip(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--containers", type=int, default=40, help="extra containers on the daemon")
    parser.add_argument("--polls", type=int, default=300, help="polls per mode and repeat")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: it starts its own dockerd and sshd", file=sys.stderr)
        return 2
    result = _run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ssh-{result['time'].replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"{args.containers + 2} containers, {args.polls} polls x {args.repeat}, medians (SSH logins: {result['ssh_logins']})")
    print(f"{'mode':<5} {'fleetd CPU ms/poll':>19} {'wall ms/poll':>13} {'sshd CPU ms/poll':>17}")
    for mode, m in result["median"].items():
        print(f"{mode:<5} {m['cpu_ms_per_poll']:>19.3f} {m['wall_ms_per_poll']:>13.3f} {m['sshd_cpu_ms_per_poll']:>17.3f}")
    print(f"CPU ssh/tcp = {result['cpu_ratio_ssh_over_tcp']:.2f}, wall ssh/tcp = {result['wall_ratio_ssh_over_tcp']:.2f}")
    print(f"-> {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
