"""``listener:``: how fleetd's own HTTP listener protects itself from idle, slow and greedy clients."""

from __future__ import annotations

import resource
from dataclasses import dataclass

from fleetd.config.fields import Section

__all__ = ["LISTENER_KEYS", "ListenerSettings", "connection_limit", "read_listener"]

LISTENER_KEYS = ("idle_timeout", "write_timeout", "max_connections", "max_per_client")

# Left to the daemons' connections, the database and the log when max_connections is automatic.
_RESERVED_FILES = 0.5


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    idle_timeout: float = 15.0  # a connection with no request under way, or still sending its headers
    write_timeout: float = 30.0  # a client that takes nothing of a pending answer for this long is cut
    max_connections: int = 0  # 0: automatic, from the open-file limit (see connection_limit)
    max_per_client: int = 64  # connections from one address at once


def connection_limit(settings: ListenerSettings) -> int:
    """The global cap: as configured, or half the open-file limit (the other half stays for the
    daemons' connections), at most 4,096 and at least 64."""
    if settings.max_connections:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(64, min(4096, int(soft * (1 - _RESERVED_FILES))))


def read_listener(top: Section) -> ListenerSettings:
    default = ListenerSettings()
    sec = top.section("listener", LISTENER_KEYS)
    if sec is None:
        return default
    idle = sec.duration("idle_timeout")
    write = sec.duration("write_timeout")
    conns = sec.integer("max_connections", minimum=0)
    per_client = sec.integer("max_per_client", minimum=1)
    if conns is not None and 0 < conns < 16:
        sec.problem("max_connections", f"must be 0 (automatic) or at least 16, got {conns}")
        conns = None
    if conns is not None and per_client is not None and conns and per_client > conns:
        sec.problem("max_per_client", f"{per_client} is more than max_connections ({conns})")
    return ListenerSettings(
        idle_timeout=default.idle_timeout if idle is None else idle,
        write_timeout=default.write_timeout if write is None else write,
        max_connections=default.max_connections if conns is None else conns,
        max_per_client=default.max_per_client if per_client is None else per_client,
    )
