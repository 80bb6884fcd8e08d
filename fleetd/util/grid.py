"""The time grid fleetd's periodic requests are due on, so that those due close together go out in
one turn of the event loop (fleet/liveness.py, the host loops' polls, the event refreshes)."""

from __future__ import annotations

import math

__all__ = ["grid_tick", "next_point"]


def grid_tick(period: float) -> float:
    """The grid's step for something done every ``period`` seconds: 0.5 s, finer for short periods (tests)."""
    return min(0.5, period / 10)


def next_point(at: float, tick: float) -> float:
    """The first point of the grid of step ``tick`` at or after loop time ``at``: the same float as
    the liveness wheel's ``slot * tick`` for the same ``at`` (its timers and these fire in one turn)."""
    return math.ceil(at / tick) * tick
