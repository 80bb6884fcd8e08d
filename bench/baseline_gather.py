"""The yardstick for fleetd's start-up: a plain aiohttp + asyncio.gather script.

One ClientSession, one semaphore with the same concurrency bound as fleetd, and per host
``GET /_ping`` then ``/info`` and ``/containers/json?all=1`` concurrently, JSON-decoded
(msgspec, untyped); ``--images`` adds ``/images/json`` after ``/info``, as fleetd's first poll does.
It fetches the data once and prints one JSON line::

    python -m bench.baseline_gather --port-file ports.txt --concurrency 200

``import_seconds`` is how long the imports took after the interpreter was up; the caller
measures the whole process (interpreter start-up included) from the outside.

``--steady SECONDS`` then keeps polling like a minimal poller would (each host every
``--interval`` seconds from a random phase: ``/info`` and ``/containers/json?all=1``
concurrently, ``/images/json`` after ``/info`` every 5th time) and reports its CPU time per host poll: the
floor that plain aiohttp sets for fleetd's steady-state figure on the same machine
(``--no-decode``: reading the answers without decoding them, the transport alone).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
import msgspec  # noqa: E402

__all__ = ["fetch_all", "main"]

_IMPORTED = time.perf_counter()


async def _get(
    session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout, decode: bool = True
) -> Any:
    async with session.get(url, timeout=timeout) as resp:
        resp.raise_for_status()
        body = await resp.read()
    return msgspec.json.decode(body) if decode and resp.content_type == "application/json" else body


async def _info(
    session: aiohttp.ClientSession,
    base: str,
    timeout: aiohttp.ClientTimeout,
    images: bool,
    decode: bool = True,
) -> Any:
    """``/info``, then ``/images/json`` on the same connection when asked (as fleetd does)."""
    info = await _get(session, f"{base}/info", timeout, decode)
    if images:
        await _get(session, f"{base}/images/json", timeout, decode)
    return info


async def _host(
    session: aiohttp.ClientSession,
    base: str,
    slots: asyncio.Semaphore,
    timeout: aiohttp.ClientTimeout,
    images: bool,
) -> int:
    async with slots:
        await _get(session, f"{base}/_ping", timeout)
        _info_answer, containers = await asyncio.gather(
            _info(session, base, timeout, images), _get(session, f"{base}/containers/json?all=1", timeout)
        )
    return len(containers)


async def fetch_all(
    ports: list[int], concurrency: int, timeout: float, images: bool = False
) -> dict[str, Any]:
    """Fetch every host once; failures are counted, not raised."""
    slots = asyncio.Semaphore(concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(
            *(_host(session, f"http://127.0.0.1:{p}", slots, client_timeout, images) for p in ports),
            return_exceptions=True,
        )
    ok = [r for r in results if isinstance(r, int)]
    return {
        "hosts": len(ports),
        "hosts_ok": len(ok),
        "containers": sum(ok),
        "fetch_seconds": time.perf_counter() - started,
    }


async def steady(
    ports: list[int],
    concurrency: int,
    timeout: float,
    interval: float,
    settle: float,
    window: float,
    decode: bool = True,
) -> dict[str, Any]:
    """A minimal poller; CPU seconds per poll over ``window`` after ``settle``."""
    slots = asyncio.Semaphore(concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    polls = 0

    async def host(base: str) -> None:
        nonlocal polls
        await asyncio.sleep(random.uniform(0, interval))
        n = 0
        while True:
            async with slots:
                await asyncio.gather(
                    _info(session, base, client_timeout, n % 5 == 0, decode),
                    _get(session, f"{base}/containers/json?all=1", client_timeout, decode),
                    return_exceptions=True,
                )
            polls += 1
            n += 1
            await asyncio.sleep(interval)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(host(f"http://127.0.0.1:{p}")) for p in ports]
        await asyncio.sleep(settle)
        polls0, cpu0 = polls, time.process_time()
        await asyncio.sleep(window)
        done, cpu = polls - polls0, time.process_time() - cpu0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "steady_window_seconds": window,
        "steady_polls": done,
        "steady_cpu_seconds": cpu,
        "steady_cpu_ms_per_poll": 1000 * cpu / done if done else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, type=Path, help="one loopback port per line")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument(
        "--images", action="store_true", help="also GET /images/json (as fleetd's first poll)"
    )
    parser.add_argument("--steady", type=float, default=0.0, help="then poll for this many seconds")
    parser.add_argument("--interval", type=float, default=15.0, help="steady-state poll interval")
    parser.add_argument(
        "--decode",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode the steady-state answers (--no-decode: the transport alone)",
    )
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before the steady window")
    args = parser.parse_args(argv)
    ports = [int(line) for line in args.port_file.read_text().split()]
    result = asyncio.run(fetch_all(ports, args.concurrency, args.timeout, args.images))
    result["import_seconds"] = _IMPORTED - _T0
    result["process_seconds"] = time.perf_counter() - _T0
    print(msgspec.json.encode(result).decode(), flush=True)
    if args.steady > 0:
        more = asyncio.run(
            steady(
                ports, args.concurrency, args.timeout, args.interval, args.settle, args.steady, args.decode
            )
        )
        print(msgspec.json.encode(more).decode(), flush=True)
    return 0 if result["hosts_ok"] == result["hosts"] else 1


if __name__ == "__main__":
    sys.exit(main())
