"""Which daemon an operation goes to, and making its effect visible afterwards.

Operations use the poller's own Engine client for the host (same connection pool, same TLS),
then ask the poller to re-poll that host, so the next read shows what the operation did.
"""

from __future__ import annotations

import asyncio
import re

from fleetd.dockerapi import DockerClient
from fleetd.fleet.poller import Poller
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState

__all__ = ["HostUnavailable", "InvalidReference", "check_ref", "client_for", "no_such_host", "settle"]

# Container names ([a-zA-Z0-9][a-zA-Z0-9_.-]+) and hex ids; nothing that could leave the URL path.
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


def no_such_host(host: str) -> str:
    """The one wording of the condition, wherever a host name is not in the inventory."""
    return f"no host named {host!r} in the inventory"


# kind -> (error code, HTTP status): the same for one call and for a target of a batch.
_KINDS: dict[str, tuple[str, int]] = {
    "unknown": ("unknown_host", 404),
    "disabled": ("host_disabled", 409),
    "not_ready": ("host_not_ready", 503),
}


class HostUnavailable(Exception):
    """No operation is possible on this host; ``kind`` says why, ``code``/``status`` how to answer."""

    def __init__(self, host: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.host = host
        self.kind = kind  # unknown | disabled | not_ready
        self.message = message
        self.code, self.status = _KINDS[kind]


class InvalidReference(ValueError):
    pass


def check_ref(ref: str) -> str:
    if not _REF.fullmatch(ref):
        raise InvalidReference(
            f"invalid container reference {ref!r}: expected a container name or (a prefix of) its id"
        )
    return ref


def client_for(state: FleetState, poller: Poller, host: str) -> DockerClient:
    record = state.get(host)
    if record is None:
        raise HostUnavailable(host, "unknown", no_such_host(host))
    if record.status is HostStatus.DISABLED or not record.settings.enabled:
        raise HostUnavailable(
            host, "disabled", f"host {host!r} is disabled in the inventory (enabled: false); enable it first"
        )
    client = poller.client(host)
    if client is None:
        raise HostUnavailable(host, "not_ready", f"host {host!r} is being reconfigured; try again")
    return client


async def settle(state: FleetState, poller: Poller, host: str, *, images: bool = False) -> bool:
    """Re-poll ``host`` now (coalesced with a poll in flight, which is discarded rather than applied).

    Waits for that poll, bounded so a hung daemon cannot hold the answer: True when it finished.
    """
    record = state.get(host)
    if record is None:
        return False
    bound = 2 * record.settings.timeout + 2.0  # one poll, plus waiting for a polling slot
    try:
        async with asyncio.timeout(bound):
            await poller.refresh(host, images=images)
    except TimeoutError:
        return False
    return True
