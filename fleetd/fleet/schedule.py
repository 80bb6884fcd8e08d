"""When each host is polled next: its own phase, jitter that never stretches the interval,
and capped, jittered exponential backoff after failures."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Schedule"]


@dataclass(slots=True)
class Schedule:
    interval: float
    jitter: float = 0.1
    max_backoff: float = 300.0
    rng: random.Random = field(default_factory=random.Random)
    _due: float | None = None
    _phased: bool = False

    @property
    def due(self) -> float | None:
        """The regular poll's monotonic due time, None before the first poll."""
        return self._due

    def next_due(self, now: float, failures: int) -> float:
        """The monotonic time of the next poll, given the poll that just ended at ``now``."""
        if failures:
            cap = max(self.max_backoff, self.interval)
            base = min(self.interval * 2 ** (failures - 1), cap)
            low = 1.0 - self.jitter if failures == 1 else 0.5
            self._due = now + base * self.rng.uniform(low, 1.0)
            self._phased = False
        elif not self._phased or self._due is None:
            # After the start-up burst (or a recovery) each host takes its own phase, so
            # polls spread over the interval instead of arriving together.
            self._phased = True
            self._due = now + self.interval * self.rng.uniform(0.1, 1.0)
        else:
            # Jitter only shortens the gap, so "fresh within one interval" holds.
            self._due = max(self._due + self.interval * (1.0 - self.rng.uniform(0, self.jitter)), now)
        return self._due
