"""Log relay cost: reading containers' logs through fleetd (NDJSON) against reading them straight from
the daemon with the same Engine client, in the same run, on one real dockerd this script starts.

Each container prints ``--lines`` numbered lines and exits. Baseline: ``client.containers.logs(
timestamps=True)`` for every container at once (what fleetd's pumps do upstream). fleetd: ``GET
/api/v1/containers/bench/<c>/logs?follow=1&tail=all`` for one container (its stream ends with the
container stopped) and ``GET /api/v1/logs?label=...&tail=all`` for all of them merged in timestamp order.
Both sides run in this one process, so CPU seconds are this process's (the NDJSON client included).

    python -m bench.logs_bench --containers 4 --lines 50000 --repeat 3     (root: it starts a dockerd)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


async def _direct(url: str, ids: list[str]) -> dict[str, float]:
    from fleetd.dockerapi import DockerClient

    async with DockerClient(url) as client:
        await client.system.ping()
        cpu, wall = time.process_time(), time.perf_counter()

        async def one(cid: str) -> int:
            n = 0
            async for _ in client.containers.logs(cid, timestamps=True, tail="all", timeout=600):
                n += 1
            return n

        lines = sum(await asyncio.gather(*(one(c) for c in ids)))
        return {"lines": lines, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


async def _through_fleetd(url: str, path: str, params: dict[str, str]) -> dict[str, float]:
    from fleetd.config.container_logs import ContainerLogSettings
    from tests.unit.opskit import host, settings, start_client

    # Logs readable without a token on loopback (role viewer): the bench needs no auth set-up.
    cfg = settings(
        Path(tempfile.mkdtemp(prefix="fl-logb-")),
        [host("bench", url, interval=60.0, timeout=5.0)],
        container_logs=ContainerLogSettings(role="viewer"),
    )
    client = await start_client(cfg)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        resp = await client.get(path, params=params)
        assert resp.status == 200, await resp.text()
        n = 0
        async for raw in resp.content:
            if b'"line"' in raw:
                n += 1
        return {"lines": n, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    finally:
        await client.close()


def _measure(fn: Any) -> dict[str, float]:
    """Set-up (app start, first poll, version negotiation) is left out: only the reading is timed."""
    result: dict[str, float] = asyncio.run(fn)
    return result


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    import structlog

    from tests.integration.lab_daemon import Daemon
    from tests.integration.lab_image import BUSYBOX_IMAGE, busybox_rootfs_tar
    from tests.integration.lab_os import free_port

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    root = Path(tempfile.mkdtemp(prefix="fl-logb-", dir="/tmp"))
    daemon = Daemon("bench", "docker", root / "d", free_port(random.Random()), {})
    runs: dict[str, list[dict[str, float]]] = {
        "direct": [],
        "fleetd_one": [],
        "direct_one": [],
        "fleetd_merged": [],
    }
    try:
        daemon.start()
        daemon.populate(busybox_rootfs_tar())
        ids = []
        for i in range(args.containers):
            done = daemon.docker(
                "run",
                "-d",
                "--network",
                "none",
                "--name",
                f"log{i}",
                "--label",
                "logbench=1",
                BUSYBOX_IMAGE,
                "/bin/busybox",
                "seq",
                "1",
                str(args.lines),
            )
            ids.append(done.stdout.strip())
        for cid in ids:
            daemon.docker("wait", cid)
        url = daemon.tcp_url
        for _ in range(args.repeat):
            runs["direct_one"].append(_measure(_direct(url, ids[:1])))
            runs["fleetd_one"].append(
                _measure(
                    _through_fleetd(url, "/api/v1/containers/bench/log0/logs", {"follow": "1", "tail": "all"})
                )
            )
            runs["direct"].append(_measure(_direct(url, ids)))
            runs["fleetd_merged"].append(
                _measure(_through_fleetd(url, "/api/v1/logs", {"label": "logbench=1", "tail": "all"}))
            )
    finally:
        daemon.destroy()
    med = {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in runs.items()}
    return {
        "containers": args.containers,
        "lines": args.lines,
        "repeat": args.repeat,
        "runs": runs,
        "median": med,
        "one_cpu_ratio": med["fleetd_one"]["cpu_s"] / med["direct_one"]["cpu_s"],
        "one_wall_ratio": med["fleetd_one"]["wall_s"] / med["direct_one"]["wall_s"],
        "merged_cpu_ratio": med["fleetd_merged"]["cpu_s"] / med["direct"]["cpu_s"],
        "merged_wall_ratio": med["fleetd_merged"]["wall_s"] / med["direct"]["wall_s"],
        "commit": os.popen(f"git -C {ROOT} rev-parse --short HEAD").read().strip(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--lines", type=int, default=50_000, help="lines each container prints")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: it starts its own dockerd", file=sys.stderr)
        return 2
    result = _run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"logs-{result['time'].replace(':', '')}.json").write_text(json.dumps(result, indent=2))
    print(f"{args.containers} containers x {args.lines} lines, medians of {args.repeat}:")
    for name, m in result["median"].items():
        print(
            f"  {name:14} {m['lines']:>8.0f} lines  {m['wall_s']:6.2f} s wall  {m['cpu_s']:6.2f} s CPU"
            f"  {m['lines'] / m['wall_s']:>9.0f} lines/s"
        )
    print(
        f"  one container: fleetd/direct CPU x{result['one_cpu_ratio']:.2f}, wall x{result['one_wall_ratio']:.2f}"
    )
    print(
        f"  merged:        fleetd/direct CPU x{result['merged_cpu_ratio']:.2f}, wall x{result['merged_wall_ratio']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
