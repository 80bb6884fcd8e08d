"""Sane ranges for durations and counts: a value outside is named with its bound, never accepted.

A snapshot every millisecond or a retention count past 64 bits is a typo, not a wish; the
bounds are wide enough for every real use and narrow enough that timers and SQLite never overflow.
"""

from __future__ import annotations

__all__ = [
    "CONCURRENCY_MAX",
    "IMAGES_EVERY_MAX",
    "INTERVAL_MAX",
    "KEEP_COUNT_MAX",
    "MAX_AGE_MAX",
    "MAX_BACKOFF_MAX",
    "SHUTDOWN_GRACE_MAX",
    "SNAPSHOT_INTERVAL_MAX",
    "SNAPSHOT_INTERVAL_MIN",
    "TIMEOUT_MAX",
]

DAY = 86400.0
INTERVAL_MAX = DAY  # poll.interval, hosts[].interval
TIMEOUT_MAX = 3600.0  # poll.timeout, poll.connect_timeout, hosts[].timeout
MAX_BACKOFF_MAX = DAY
CONCURRENCY_MAX = 100_000
IMAGES_EVERY_MAX = 10_000
SNAPSHOT_INTERVAL_MIN = 10.0  # a snapshot is a full copy of the fleet's rows
SNAPSHOT_INTERVAL_MAX = 30 * DAY
KEEP_COUNT_MAX = 10_000_000  # snapshots.keep.last (and other snapshot counts)
MAX_AGE_MAX = 100 * 365 * DAY
SHUTDOWN_GRACE_MAX = 3600.0
