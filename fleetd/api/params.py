"""Query-string parsing with errors a person can act on."""

from __future__ import annotations

from collections.abc import Collection

from multidict import MultiMapping

from fleetd.api.errors import BadRequest

__all__ = ["INT64_MAX", "check_known", "get_bool", "get_choice", "get_int", "get_one", "is_plain_int"]

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

