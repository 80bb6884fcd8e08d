"""``fleetd run`` under tracemalloc, dumping grouped allocation statistics on SIGUSR2.

    python -m bench.traced_fleetd OUT.json --config fleetd.yaml [--frames 12]

Used by ``bench.mem_profile``; on each SIGUSR2 the process writes OUT.json (atomically): VmRSS, the
traced total, and every live allocation grouped by *where fleetd asked for it*: the innermost frame
inside the ``fleetd`` package (or the innermost frame of all when none is), together with the
innermost frame itself (the library or builtin line that allocated), with size and count.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import tracemalloc
from collections import defaultdict
from pathlib import Path
from types import FrameType

__all__ = ["main"]

_PKG = os.sep + "fleetd" + os.sep


def _short(filename: str) -> str:
    for marker in (_PKG, os.sep + "site-packages" + os.sep, os.sep + "python3.11" + os.sep):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + len(marker) - (len("fleetd") + 1 if marker == _PKG else 0) :]
    return filename


def grouped(snapshot: tracemalloc.Snapshot) -> list[dict[str, object]]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for stat in snapshot.statistics("traceback"):
        frames = list(stat.traceback)  # oldest first
        inner = frames[-1]
        owner = next((f for f in reversed(frames) if _PKG in f.filename), inner)
        key = (f"{_short(owner.filename)}:{owner.lineno}", f"{_short(inner.filename)}:{inner.lineno}")
        g = groups[key]
        g[0] += stat.size
        g[1] += stat.count
    rows = [{"owner": k[0], "inner": k[1], "size": v[0], "count": v[1]} for k, v in groups.items()]
    rows.sort(key=lambda r: -int(r["size"]))  # type: ignore[call-overload]
    return rows


def dump(out: Path) -> None:
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    traced, peak = tracemalloc.get_traced_memory()
    doc = {"rss_kib": rss, "traced": traced, "traced_peak": peak, "groups": grouped(snapshot)}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, out)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.traced_fleetd")
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=12)
    args, rest = parser.parse_known_args()
    tracemalloc.start(args.frames)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        dump(args.out)

    signal.signal(signal.SIGUSR2, on_signal)
    from fleetd.cli import main as fleetd_main

    return fleetd_main(["run", *rest])


if __name__ == "__main__":
    sys.exit(main())
