"""Durations in the config: ``"500ms"``, ``"15s"``, ``"2m"``, ``"1h30m"``, ``"90d"`` or plain seconds."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)")
_PLAIN = re.compile(r"\s*[+-]?(\d+(?:\.\d+)?|\.\d+)\s*")
_HINT = "use e.g. '500ms', '15s', '2m', '1h', '90d', '1h30m' or a number of seconds"


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """Return *value* as float seconds; raise :class:`ValueError` with a message fit for the user.

    Numbers are seconds. Strings are one or more ``<number><unit>`` parts (units ms, s, m, h, d),
    or a bare number of seconds. Negative, non-finite and boolean values are refused, and so is
    zero unless *allow_zero*.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got the boolean {str(value).lower()}; {_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"expected a duration, got {_kind(value)}; {_HINT}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"duration must be a finite number, got {value!r}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value!r}")
    if seconds == 0 and not allow_zero:
        raise ValueError(f"duration must be greater than zero, got {value!r}")
    return seconds


def _parse_text(text: str) -> float:
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"expected a duration, got an empty string; {_HINT}")
    if stripped.startswith("-"):
        raise ValueError(f"duration must not be negative, got {text!r}")
    if _PLAIN.fullmatch(stripped):
        return float(stripped)
    total = 0.0
    pos = 0
    seen: set[str] = set()
    while pos < len(stripped):
        match = _PART.match(stripped, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}; {_HINT}")
        unit = match.group(2)
        if unit in seen:
            raise ValueError(f"invalid duration {text!r}: unit {unit!r} given twice")
        seen.add(unit)
        total += float(match.group(1)) * _UNITS[unit]
        pos = match.end()
    return total


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` for messages: 90 → ``"1m30s"``, 0.5 → ``"500ms"``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    parts: list[str] = []
    rest = seconds
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        count = int(rest // size)
        if count:
            parts.append(f"{count}{unit}")
            rest -= count * size
    rest = round(rest, 3)
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)
