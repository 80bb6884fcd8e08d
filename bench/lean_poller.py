"""The leanest aiohttp poller, the yardstick for fleetd's steady CPU per host poll (bench.poll_bench).

    python -m bench.lean_poller --port-file ports.txt --interval 10 [--decode orjson|msgspec|none]

One ``ClientSession`` with an unlimited connector, one task per host from a random phase: every
``--interval`` seconds ``GET /info`` and ``GET /containers/json?all=1`` concurrently on keep-alive
connections, plus ``/images/json`` after ``/info`` every ``--images-every`` polls (fleetd's default is
5; 0: never), bounded by a semaphore of ``--concurrency``. URLs and the timeout object are built once.
Answers are read whole and, by default, decoded with orjson into dicts (``--decode none``: read only).

SIGUSR1 prints ``polls=N`` (polls finished so far) on stdout, so the caller can count the polls of
exactly the window it measures the process's CPU time over.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["main"]


def _decoder(name: str) -> Callable[[bytes], Any] | None:
    if name == "orjson":
        import orjson

        return orjson.loads
    if name == "msgspec":
        import msgspec

        return msgspec.json.decode
    return None


async def run(args: argparse.Namespace) -> None:
    ports = [int(p) for p in args.port_file.read_text().split()]
    decode = _decoder(args.decode)
    slots = asyncio.Semaphore(args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    polls = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(f"polls={polls}", flush=True))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def get(url: str) -> Any:
            async with session.get(url, timeout=timeout) as resp:
                body = await resp.read()
            return decode(body) if decode is not None else body

        async def info_then_images(info: str, images: str | None) -> None:
            await get(info)
            if images is not None:
                await get(images)

        async def host(port: int) -> None:
            nonlocal polls
            base = f"http://127.0.0.1:{port}"
            info, containers, images = f"{base}/info", f"{base}/containers/json?all=1", f"{base}/images/json"
            await asyncio.sleep(random.uniform(0, args.interval))
            n = 0
            while True:
                want = images if args.images_every and n % args.images_every == 0 and n else None
                async with slots:
                    await asyncio.gather(info_then_images(info, want), get(containers), return_exceptions=True)
                polls += 1
                n += 1
                await asyncio.sleep(args.interval)

        tasks = [asyncio.create_task(host(p)) for p in ports]
        print("READY", flush=True)
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lean_poller", description=__doc__.split("\n")[0])
    p.add_argument("--port-file", required=True, type=Path)
    p.add_argument("--interval", type=float, default=15.0)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--images-every", type=int, default=5)
    p.add_argument("--decode", choices=("orjson", "msgspec", "none"), default="orjson")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = p.parse_args(argv)
    if args.uvloop:
        import uvloop

        uvloop.run(run(args))
    else:
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
