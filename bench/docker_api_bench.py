"""fleetd's Docker endpoint against a simulated fleet: `docker ps -a` answered from the aggregate,
against what a pass-through proxy must do for every `ps` (ask every host), measured in the same run.

Run from the repository root::

    python -m bench.docker_api_bench --hosts 200 --containers 40 --latency 0.02

1. A fake fleet (``bench.fake_fleet``, its own process) and ``fleetd run`` with ``docker_api`` on.
2. **Baseline**: a plain aiohttp gather of ``GET /v1.41/containers/json?all=1`` over every host, the
   least a proxy without an aggregate (or classic Swarm on a cache miss) pays per ``docker ps``.
3. **fleetd**: the same list through the Docker endpoint, raw HTTP (``/v1.41/containers/json?all=1``)
   and with the real docker CLI (``docker ps -a -q``, including the CLI's own start-up and ping).
Each is run ``--runs`` times; medians and the ratios to the baseline are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.fleet_bench import fake_fleet, stop
from tests.integration.lab_os import free_port

ROOT = Path(__file__).resolve().parent.parent


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def _gather(ports: list[int]) -> int:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(port: int) -> int:
            async with http.get(f"http://127.0.0.1:{port}/v1.41/containers/json?all=1") as resp:
                return len(await resp.json())

        return sum(await asyncio.gather(*(one(p) for p in ports)))


def _timed(fn: object, runs: int) -> tuple[float, object]:
    times: list[float] = []
    result: object = None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds each fake answer waits")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cli", default=shutil.which("docker") or "docker")
    args = parser.parse_args(argv)
    args.hang_fraction, args.seed = 0.0, 0
    work = Path(tempfile.mkdtemp(prefix="fleetd-dockerapi-bench-"))
    with fake_fleet(args, work) as fleet:
        api_port, docker_port = free_port(), free_port()
        hosts = "\n".join(f"  - {{name: h{i:04d}, url: 'tcp://127.0.0.1:{p}'}}" for i, p in enumerate(fleet.ports))
        (work / "fleetd.yaml").write_text(
            f"listen: 127.0.0.1:{api_port}\npoll: {{interval: 60s, timeout: 10s}}\nsnapshots: {{enabled: false}}\n"
            f"log: {{level: warning, format: json}}\ndocker_api: {{listen: 127.0.0.1:{docker_port}}}\nhosts:\n{hosts}\n"
        )
        with (work / "fleetd.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fleetd", "run", "--config", str(work / "fleetd.yaml")],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    status, body = _get(api_port, "/api/v1/summary")
                    if status == 200 and json.loads(body)["hosts"]["by_state"].get("up") == args.hosts:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("fleetd did not see every host up within 120 s")
                time.sleep(0.2)
            expected = args.hosts * args.containers
            base_t, base_n = _timed(lambda: asyncio.run(_gather(fleet.ports)), args.runs)
            raw_t, raw = _timed(lambda: _get(docker_port, "/v1.41/containers/json?all=1"), args.runs)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
            env.update(DOCKER_HOST=f"tcp://127.0.0.1:{docker_port}", DOCKER_CONFIG=str(work / "cli"))
            cli_t, cli = _timed(
                lambda: subprocess.run([args.cli, "ps", "-a", "-q"], capture_output=True, text=True, env=env, check=True),
                args.runs,
            )
            raw_n = len(json.loads(raw[1]))  # type: ignore[index]
            cli_n = len(cli.stdout.split())  # type: ignore[attr-defined]
            assert base_n == raw_n == cli_n == expected, (base_n, raw_n, cli_n, expected)
            print(f"hosts={args.hosts} containers={expected} latency={args.latency}s runs={args.runs} (medians)")
            print(f"baseline gather of every host's /containers/json: {base_t * 1000:8.1f} ms")
            print(f"fleetd /v1.41/containers/json (raw HTTP):        {raw_t * 1000:8.1f} ms  ratio {raw_t / base_t:.2f}")
            print(f"fleetd `docker ps -a -q` ({args.cli}):  {cli_t * 1000:8.1f} ms  ratio {cli_t / base_t:.2f}")
        finally:
            stop(proc)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
