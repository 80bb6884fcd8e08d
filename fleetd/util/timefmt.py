"""RFC 3339 UTC timestamps, the only time format fleetd emits."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["parse_rfc3339", "rfc3339"]


def rfc3339(ts: float | None) -> str | None:
    """``1764496800.0`` → ``"2025-11-30T10:00:00Z"`` (milliseconds kept when present)."""
    if ts is None:
        return None
    if type(ts) is int:  # whole seconds (e.g. every container's Created): twice as fast this way
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Accepts ``...Z`` or an explicit offset; a naive time is taken as UTC. Raises ValueError."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
