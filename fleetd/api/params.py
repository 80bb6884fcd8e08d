"""Query-string parsing with errors a person can act on."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection

from multidict import MultiMapping

from fleetd.api.errors import BadRequest
from fleetd.config.durations import parse_duration
from fleetd.util.timefmt import parse_rfc3339

__all__ = [
    "INT64_MAX",
    "check_known",
    "get_bool",
    "get_choice",
    "get_int",
    "get_one",
    "get_time",
    "is_plain_int",
]

INT64_MAX = 2**63 - 1  # SQLite's integer range; past it a query would fail inside the store


def check_known(query: MultiMapping[str], allowed: Collection[str]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise BadRequest(
            f"unknown query parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
            code="unknown_parameter",
        )


def get_one(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"parameter {name!r} may be given only once", code="bad_parameter")
    return values[0] if values else None


def get_int(
    query: MultiMapping[str], name: str, default: int | None, *, minimum: int = 0, maximum: int | None = None
) -> int | None:
    raw = get_one(query, name)
    if raw is None or raw == "":
        return default
    top = INT64_MAX if maximum is None else maximum
    bound = f"between {minimum} and {top}"
    if not is_plain_int(raw, negative=minimum < 0):
        raise BadRequest(
            f"parameter {name!r} must be an integer {bound} (ASCII digits only), got {raw!r}",
            code="bad_parameter",
        )
    value = int(raw) if len(raw) <= 20 else top + 1
    if value < minimum or value > top:
        raise BadRequest(f"parameter {name!r} must be {bound}, got {raw}", code="bad_parameter")
    return value


def is_plain_int(raw: str, *, negative: bool = False) -> bool:
    """ASCII digits, optionally one leading minus: what ``int()`` also reads as ``" 5"``, ``"1_0"`` or
    Arabic-Indic digits is refused, so a number means the same to fleetd as to the person who typed it."""
    digits = raw[1:] if negative and raw.startswith("-") else raw
    return digits.isascii() and digits.isdigit()


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def get_bool(query: MultiMapping[str], name: str, default: bool | None = None) -> bool | None:
    raw = get_one(query, name)
    if raw is None or raw == "":
        return default
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise BadRequest(f"parameter {name!r} must be true or false, got {raw!r}", code="bad_parameter")


def get_choice(query: MultiMapping[str], name: str, choices: Collection[str]) -> str | None:
    raw = get_one(query, name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise BadRequest(
            f"parameter {name!r} must be one of {', '.join(sorted(choices))}; got {raw!r}",
            code="bad_parameter",
        )
    return raw



_UNIX = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", re.ASCII)  # 12 digits reach past the year 30000
_AGO = re.compile(r"(?:[0-9]{1,9}(?:\.[0-9]{1,9})?(?:ms|s|m|h|d))+", re.ASCII)  # a bare number is Unix seconds


def _ago(raw: str, clock: Callable[[], float]) -> float:
    if not _AGO.fullmatch(raw):
        raise ValueError(raw)
    return max(0.0, clock() - parse_duration(raw))


def get_time(query: MultiMapping[str], name: str, *, clock: Callable[[], float] = time.time) -> float | None:
    """A point in time, the same way for every endpoint that takes one (``since``, ``until``):
    Unix seconds (``1733220000`` or ``1733220000.5``), an RFC 3339 time (``2026-12-03T10:00:00Z``), or a
    duration back from now (``90s``, ``10m``, ``2h``, ``7d``)."""
    raw = get_one(query, name)
    if not raw:
        return None
    if _UNIX.fullmatch(raw):
        return float(raw)
    for parse in (parse_rfc3339, lambda r: _ago(r, clock)):
        try:
            return parse(raw)
        except ValueError:
            pass
    raise BadRequest(
        f"parameter {name!r} must be Unix seconds, an RFC 3339 time such as 2026-12-03T10:00:00Z "
        f"or a duration back from now such as 10m; got {raw!r}",
        code="bad_parameter",
    )
