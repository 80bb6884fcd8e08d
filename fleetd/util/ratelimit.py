"""Per-client token buckets: how many times an address may do something, refilled over time.

Used to rate-limit failed authentications (:class:`FailureGate`, shared by the API's
:mod:`fleetd.api.auth` and the Docker endpoint's :mod:`fleetd.dockercompat.security`) and to keep a
flood of refused calls from filling the audit log (:mod:`fleetd.ops.audit`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["ClientBuckets", "FailureGate", "retry_seconds"]


def retry_seconds(wait: float) -> int:
    """``wait`` as whole seconds for a ``Retry-After`` header: rounded up, at least 1."""
    return max(1, math.ceil(wait))


class ClientBuckets:
    """A token bucket per client address.

    ``burst`` units at once, refilled at ``per_minute``; an empty bucket blocks the address until it
    refills one unit. At most ``max_clients`` addresses are tracked; the least recently spending ones
    are forgotten first (a forgotten address starts again with a full bucket).
    """

    def __init__(
        self,
        *,
        burst: int = 10,
        per_minute: float = 10.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # addr → (level, at)

    def _level(self, addr: str, now: float) -> float:
        level, at = self._buckets.get(addr, (float(self.burst), now))
        return min(float(self.burst), level + (now - at) * self.rate)

    def retry_after(self, addr: str) -> float | None:
        """Seconds until ``addr`` may try again, or None when it is not blocked."""
        if addr not in self._buckets:
            return None
        level = self._level(addr, self.clock())
        return None if level >= 1.0 else (1.0 - level) / self.rate

    def spend(self, addr: str) -> bool:
        """Spend one unit; True when this emptied the bucket (the address is now blocked)."""
        now = self.clock()
        level = self._level(addr, now) - 1.0
        self._buckets[addr] = (level, now)
        self._buckets.move_to_end(addr)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return level < 1.0

    def __len__(self) -> int:
        return len(self._buckets)


_PROVEN_MAX = 10_000


class FailureGate:
    """Wrong-token limiting that never locks out a valid token.

    Wrong tokens spend the address's bucket (10 at once, then one every 6 s); an empty bucket blocks
    the address. A token that authenticated from an address is remembered (by digest, at most
    10,000 pairs, least recent forgotten first): a block set off by wrong tokens from the same
    address — a typo, a stale script, a neighbour behind the same NAT — never refuses it, while
    guessing stays blocked.
    """

    def __init__(self, buckets: ClientBuckets | None = None) -> None:
        self.buckets = buckets if buckets is not None else ClientBuckets(burst=10, per_minute=10.0)
        self._proven: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    def retry_after(self, addr: str, digest: bytes | None) -> float | None:
        """Seconds ``addr`` must wait before presenting ``digest``; None when it may try now."""
        wait = self.buckets.retry_after(addr)
        if wait is None or (digest is not None and (addr, digest) in self._proven):
            return None
        return wait

    def failed(self, addr: str) -> bool:
        """Count a wrong token; True when this blocked the address."""
        return self.buckets.spend(addr)

    def succeeded(self, addr: str, digest: bytes) -> None:
        key = (addr, digest)
        self._proven[key] = None
        self._proven.move_to_end(key)
        while len(self._proven) > _PROVEN_MAX:
            self._proven.popitem(last=False)
