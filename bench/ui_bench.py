"""Dashboard page load in a real Chromium with a simulated fleet (default 1,000 hosts × 40 containers).

    python -m bench.ui_bench --hosts 1000 --containers 40 --runs 5

Starts ``bench.fake_fleet`` and ``fleetd run`` in front of it (anonymous reads on loopback), waits for a
complete view, then loads each page in Debian's Chromium through Playwright, ``--runs`` times with a
fresh browser context (an empty cache) each time:

* **navigation** — the browser's Navigation Timing: ``responseEnd`` (the page itself), and
  ``domContentLoadedEventEnd`` (every JavaScript module loaded and run);
* **ready** — ``performance.now()`` when the page shows its data (overview: one tile per host;
  containers: the first page of rows), measured in the page, from the navigation's start.

The baseline, in the same run: the API requests the page makes, made by a plain Python client over
keep-alive (the floor for any client that shows the same data); the ratio is ready / baseline.
Figures are medians; results are written to bench/RESULTS-ui.md's format on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet_bench import PYTHON, Api, fake_fleet, free_port, stop

__all__ = ["main"]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

#: page → (path, JavaScript condition for "the data is shown", the API calls it needs)
PAGES: dict[str, tuple[str, str, list[str]]] = {
    "overview": (
        "/",
        "document.querySelectorAll('a.tile').length >= {hosts}",
        ["/api/v1/whoami", "/api/v1/summary", "/api/v1/hosts"],
    ),
    "containers": (
        "/ui/containers",
        "document.querySelectorAll('#rows tr').length >= 100",
        ["/api/v1/whoami", "/api/v1/containers?limit=100&offset=0"],
    ),
    "containers, sorted by age, filtered": (
        "/ui/containers?sort=-created&state=running",
        "document.querySelectorAll('#rows tr').length >= 100",
        ["/api/v1/whoami", "/api/v1/containers?state=running&sort=-created&limit=100&offset=0"],
    ),
}


def write_config(path: Path, ports: list[int], listen: int, interval: float) -> None:
    lines = [
        f"listen: 127.0.0.1:{listen}",
        f"poll: {{interval: {interval}s, timeout: 5s, concurrency: 200}}",
        "snapshots: {enabled: false}",
        "auth: {anonymous_read: true}",
        "log: {level: warning, format: json}",
        "hosts:",
    ]
    envs = ("prod", "staging", "dev")
    lines += [
        f"  - {{name: h{i:05d}, url: 'tcp://127.0.0.1:{p}', labels: {{env: {envs[i % 3]}, rack: r{i % 20:02d}}}}}"
        for i, p in enumerate(ports)
    ]
    path.write_text("\n".join(lines) + "\n")


def wait_complete(api: Api, hosts: int, within: float = 120.0) -> float:
    started = time.monotonic()
    while True:
        try:
            summary = api.json("/api/v1/summary")
            if summary["hosts"]["by_state"].get("up", 0) >= hosts:
                return time.monotonic() - started
        except (OSError, RuntimeError):
            pass
        if time.monotonic() - started > within:
            raise RuntimeError("fleetd never had a complete view")
        time.sleep(0.25)


def baseline(api: Api, paths: list[str]) -> float:
    started = time.perf_counter()
    for path in paths:
        api.get(path)
    return time.perf_counter() - started


def load_page(browser: Any, url: str, condition: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        page.wait_for_function(f"() => {condition}", timeout=120_000, polling="raf")
        ready = page.evaluate("performance.now()")
        nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
        timing = json.loads(nav)
        return {
            "response_ms": timing["responseEnd"],
            "dcl_ms": timing["domContentLoadedEventEnd"],
            "ready_ms": ready,
            "transfer_kib": sum(
                page.evaluate("performance.getEntriesByType('resource').map(r => r.transferSize)")
            ) / 1024,
        }
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=15.0)
    args = parser.parse_args(argv)
    fleet_args = argparse.Namespace(
        hosts=args.hosts, containers=args.containers, latency=0.0, hang_fraction=0.0, seed=1
    )
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="fleetd-ui-bench-") as tmp, fake_fleet(fleet_args, Path(tmp)) as fleet:
        workdir = Path(tmp)
        listen = free_port()
        write_config(workdir / "fleetd.yaml", fleet.ports, listen, args.interval)
        log = (workdir / "fleetd.log").open("w")
        import subprocess

        proc = subprocess.Popen(
            [str(Path(PYTHON).parent / "fleetd"), "run", "--config", str(workdir / "fleetd.yaml")],
            cwd=workdir, stdout=log, stderr=log,
        )  # fmt: skip
        try:
            api = Api(listen)
            complete = wait_complete(api, args.hosts)
            print(f"fleetd: {args.hosts} hosts up after {complete:.1f}s", flush=True)
            total = api.json("/api/v1/containers?limit=0")["total"]
            results: dict[str, Any] = {}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    for name, (path, condition, calls) in PAGES.items():
                        cond = condition.format(hosts=args.hosts)
                        load_page(browser, f"http://127.0.0.1:{listen}{path}", cond)  # warm fleetd's caches
                        runs = [load_page(browser, f"http://127.0.0.1:{listen}{path}", cond) for _ in range(args.runs)]
                        base = [baseline(api, calls) * 1000 for _ in range(args.runs)]
                        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                        med["baseline_ms"] = statistics.median(base)
                        med["ratio"] = med["ready_ms"] / med["baseline_ms"]
                        results[name] = med
                        print(f"{name}: {json.dumps({k: round(v, 1) for k, v in med.items()})}", flush=True)
                finally:
                    browser.close()
        finally:
            stop(proc)
            log.close()
    print()
    load = os.getloadavg()
    print(f"{args.hosts} hosts × {args.containers} containers ({total} containers), {args.runs} runs, medians;"
          f" load average {load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} CPUs:")  # fmt: skip
    print()
    print("| page | page response | DOMContentLoaded | data shown (ready) | API calls, plain client | ready / API | transferred |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['response_ms']:.0f} ms | {r['dcl_ms']:.0f} ms | **{r['ready_ms']:.0f} ms** | "
            f"{r['baseline_ms']:.0f} ms | {r['ratio']:.2f} | {r['transfer_kib']:.0f} KiB |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
