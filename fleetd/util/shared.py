"""One value kept per key in a bounded cache: what many records share (label sets, port lists) and
what many calls format the same way (a second's timestamp)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["SHARED_MAX", "shared"]

K = TypeVar("K")
V = TypeVar("V")
SHARED_MAX = 65_536


def shared(cache: dict[K, V], key: K, make: Callable[[K], V], limit: int = SHARED_MAX) -> V:
    """The one value kept for ``key`` in ``cache`` (made on first sight; the cache starts over past
    ``limit`` entries, so a daemon minting distinct values cannot grow it without end)."""
    found = cache.get(key)
    if found is None:
        if len(cache) >= limit:
            cache.clear()
        found = cache[key] = make(key)
    return found
