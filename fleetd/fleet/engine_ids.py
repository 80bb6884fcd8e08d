"""Which hosts report which Engine ID, kept by the state's writer (cloned VMs share one).

The fleet feed renders a host's view for every host event, and a view says whether the host's engine
ID is shared; scanning every host for that made each event O(hosts) and a start-up O(hosts²)
(half of fleetd's CPU while 10,000 hosts came up). This map answers for one host in O(twins), and for
the whole fleet (/metrics, the summary) in O(duplicates). The writer is the only one who moves facts,
so it is exact.
"""

from __future__ import annotations

__all__ = ["EngineIds"]


class EngineIds:
    __slots__ = ("_hosts", "_twinned", "shared")

    def __init__(self) -> None:
        self._hosts: dict[str, set[str]] = {}  # engine ID → the hosts whose last answer reported it
        self._twinned: set[str] = set()  # the engine IDs more than one host reports
        self.shared = 0  # hosts whose engine ID another host reports too (the summary's count)

    def move(self, host: str, before: str, after: str) -> None:
        """``host`` reported ``after`` (``""``: none) where it reported ``before``."""
        if before == after:
            return
        if before and (names := self._hosts.get(before)) is not None and host in names:
            self.shared -= _shared(len(names))
            names.discard(host)
            self.shared += _shared(len(names))
            if not names:
                del self._hosts[before]
            if len(names) < 2:
                self._twinned.discard(before)
        if after:
            names = self._hosts.setdefault(after, set())
            self.shared -= _shared(len(names))
            names.add(host)
            self.shared += _shared(len(names))
            if len(names) > 1:
                self._twinned.add(after)

    def hosts_of(self, engine_id: str) -> set[str]:
        return self._hosts.get(engine_id, set()) if engine_id else set()

    def duplicates(self) -> dict[str, list[str]]:
        """Engine ID → its hosts (sorted), for the IDs more than one host reports: O(duplicates)."""
        hosts = self._hosts
        return {eid: sorted(hosts[eid]) for eid in sorted(self._twinned)}


def _shared(n: int) -> int:
    """Hosts counted as duplicates in a group of ``n`` reporting one engine ID."""
    return n if n > 1 else 0
