"""Which hosts report which Engine ID, kept by the state's writer (cloned VMs share one).

The fleet feed renders a host's view for every host event, and a view says whether the host's engine
ID is shared; scanning every host for that made each event O(hosts) and a start-up O(hosts²)
(half of fleetd's CPU while 10,000 hosts came up). This map answers for one host in O(twins).
"""

from __future__ import annotations

__all__ = ["EngineIds"]


class EngineIds:
    __slots__ = ("_hosts",)

    def __init__(self) -> None:
        self._hosts: dict[str, set[str]] = {}  # engine ID → the hosts whose last answer reported it

    def move(self, host: str, before: str, after: str) -> None:
        """``host`` reported ``after`` (``""``: none) where it reported ``before``."""
        if before == after:
            return
        if before and (names := self._hosts.get(before)) is not None:
            names.discard(host)
            if not names:
                del self._hosts[before]
        if after:
            self._hosts.setdefault(after, set()).add(host)

    def hosts_of(self, engine_id: str) -> set[str]:
        return self._hosts.get(engine_id, set()) if engine_id else set()
