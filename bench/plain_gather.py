"""The plain script a user would write instead of fleetd, for the cold complete view (bench.poll_bench).

    python -m bench.plain_gather --port-file ports.txt --concurrency 256

aiohttp + orjson, one ``ClientSession``, a semaphore of ``--concurrency``; per host ``GET /info`` then
``GET /containers/json?all=1`` (no ``/_ping``, no version negotiation), both decoded. When every host
is fetched it prints one JSON line (hosts, containers, seconds since the interpreter started) and
exits; the caller times the whole process from exec to that line.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import aiohttp  # noqa: E402
import orjson  # noqa: E402

__all__ = ["main"]


async def gather(ports: list[int], concurrency: int, timeout: float) -> dict[str, float]:
    slots = asyncio.Semaphore(concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def host(session: aiohttp.ClientSession, port: int) -> int:
        base = f"http://127.0.0.1:{port}"
        async with slots:
            async with session.get(f"{base}/info", timeout=client_timeout) as resp:
                orjson.loads(await resp.read())
            async with session.get(f"{base}/containers/json?all=1", timeout=client_timeout) as resp:
                return len(orjson.loads(await resp.read()))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        got = await asyncio.gather(*(host(session, p) for p in ports), return_exceptions=True)
    ok = [n for n in got if isinstance(n, int)]
    return {"hosts": len(ports), "hosts_ok": len(ok), "containers": sum(ok)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plain_gather", description=__doc__.split("\n")[0])
    p.add_argument("--port-file", required=True, type=Path)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args(argv)
    ports = [int(x) for x in args.port_file.read_text().split()]
    imported = time.perf_counter() - _T0
    result = asyncio.run(gather(ports, args.concurrency, args.timeout))
    result |= {"import_seconds": imported, "process_seconds": time.perf_counter() - _T0}
    print(orjson.dumps(result).decode(), flush=True)
    return 0 if result["hosts_ok"] == result["hosts"] else 1


if __name__ == "__main__":
    sys.exit(main())
