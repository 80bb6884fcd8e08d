"""``poll.max_answer``: the largest answer fleetd reads from a daemon, per kind of endpoint.

    poll:
      max_answer:
        containers: 64MiB   # GET /containers/json
        images: 32MiB       # GET /images/json
        info: 4MiB          # GET /info, /version, /_ping
        other: 16MiB        # inspect, create, search, error bodies, ...

Sizes are a number of bytes or a number with a unit: B, KB, MB, GB (powers of 1000) or
KiB, MiB, GiB (powers of 1024).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetd.config.fields import Section, describe
from fleetd.config.yamlsrc import Scalar

__all__ = ["LIMIT_KEYS", "AnswerLimits", "parse_size", "read_answer_limits"]

MiB = 1024 * 1024
LIMIT_KEYS = ("containers", "images", "info", "other")
#: Below this a real daemon's /info would not fit; above it one answer could exhaust the machine.
MIN_SIZE = 64 * 1024
MAX_SIZE = 4 * 1024**3
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": MiB, "gib": 1024**3}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
_HINT = "use e.g. '64MiB', '512KiB', '1GiB' or a number of bytes"


@dataclass(frozen=True, slots=True)
class AnswerLimits:
    """Caps in bytes; the defaults are far above what a real daemon sends (≈3 KiB per container)."""

    containers: int = 64 * MiB
    images: int = 32 * MiB
    info: int = 4 * MiB
    other: int = 16 * MiB


def parse_size(value: object) -> int:
    """Bytes from ``65536``, ``"64MiB"``, ``"1.5GB"``; ValueError with a message fit for the user."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a size, got {value!r}; {_HINT}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or (unit and unit not in _UNITS):
            raise ValueError(f"invalid size {value!r}; {_HINT}")
        size = int(float(match.group(1)) * _UNITS.get(unit, 1))
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"must be between 64KiB and 4GiB, got {value!r}")
    return size


def read_answer_limits(poll: Section) -> AnswerLimits:
    default = AnswerLimits()
    sec = poll.section("max_answer", LIMIT_KEYS)
    if sec is None:
        return default
    values: dict[str, int] = {}
    for key in LIMIT_KEYS:
        node = sec.get(key)
        if node is None:
            continue
        if not isinstance(node, Scalar):
            sec.problem(key, f"expected a size such as '64MiB', got {describe(node)}")
            continue
        try:
            values[key] = parse_size(node.value)
        except ValueError as exc:
            sec.problem(key, str(exc))
    return AnswerLimits(**values)
