"""Small statistics helpers shared by the snapshot benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MIB", "pct", "summary_ms"]

MIB = 1024 * 1024


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 0.50) * 1000, 2),
        "p99_ms": round(pct(values, 0.99) * 1000, 2),
        "max_ms": round(max(values, default=float("nan")) * 1000, 2),
    }
