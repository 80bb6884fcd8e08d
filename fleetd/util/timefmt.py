"""RFC 3339 UTC timestamps, the only time format fleetd emits."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from fleetd.util.shared import shared

__all__ = ["parse_rfc3339", "rfc3339"]


def rfc3339(ts: float | None) -> str | None:
    """``1764496800.0`` → ``"2025-11-30T10:00:00Z"`` (milliseconds kept when present)."""
    if ts is None:
        return None
    seconds = math.floor(ts)
    micros = 0 if type(ts) is int else round((ts - seconds) * 1e6)  # as datetime rounds
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    # Every poll and refresh stamps its rows with the time, and containers' Created repeat: the
    # formatting (~4 µs) is done once per distinct second, the cache kept small.
    text = shared(_SECONDS, seconds, _format_second, _SECONDS_MAX)
    return f"{text}.{micros // 1000:03d}Z" if micros else text + "Z"


_SECONDS: dict[int, str] = {}
_SECONDS_MAX = 4096


def _format_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_rfc3339(text: str) -> float:
    """Accepts ``...Z`` or an explicit offset; a naive time is taken as UTC. Raises ValueError."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
