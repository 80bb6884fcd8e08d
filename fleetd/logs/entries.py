"""The records a log stream sends (one JSON object per NDJSON line) and Docker's timestamp prefix."""

from __future__ import annotations

import calendar
import re

import msgspec

__all__ = ["LogEnd", "LogEntry", "LogError", "parse_timestamp", "since_param", "split_timestamp"]


class LogEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of one container: ``{"host", "id", "container", "stream", "time", "line"}``."""

    host: str
    id: str
    container: str
    stream: str
    time: str | None = None  # RFC 3339 with nanoseconds, as the daemon stamped it
    line: str


class LogError(msgspec.Struct, frozen=True, kw_only=True):
    """In a merged stream: one container's upstream stream failed (the others go on), and why."""

    host: str
    id: str
    container: str
    error: str


class LogEnd(msgspec.Struct, frozen=True):
    """The last line of a stream the server ends: ``{"end": true, "reason": "..."}``."""

    reason: str
    end: bool = True


# 2026-12-03T09:25:25.123456789Z (dockerd pads to 9 digits; podman and others may not, or use an offset)
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def parse_timestamp(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time, or None when it is not one."""
    m = _STAMP.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    frac = m.group(7) or ""
    ns = int(frac.ljust(9, "0")) if frac else 0
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + ns


def split_timestamp(line: str) -> tuple[str | None, int | None, str]:
    """``"<RFC 3339> text"`` (what ``timestamps=1`` makes the daemon send) → (time, ns, text)."""
    stamp, sep, rest = line.partition(" ")
    if sep or stamp:
        ns = parse_timestamp(stamp)
        if ns is not None:
            return stamp, ns, rest
    return None, None, line


def since_param(ns: int) -> str:
    """The Engine's ``since`` for a time in nanoseconds: ``"<sec>.<9 digits>"`` (inclusive)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
