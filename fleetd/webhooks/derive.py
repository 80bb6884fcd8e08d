"""Fleet events derived from the state after each write: the webhooks' source until the fleet feed
is fed by the state's change signal (then the service subscribes to the feed, and this goes).

It compares, after every state change, each host's status and the state and health of each container
of a host whose container list changed; it knows no Engine action (so no OOM) and reads exit codes
from ``Status`` ("Exited (137) ...").
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from fleetd.fleet.feed import FleetEvent, Lagged
from fleetd.fleet.records import ContainerRecord
from fleetd.fleet.state import FleetState
from fleetd.webhooks.notices import exit_code_of

__all__ = ["StateDiffSource"]


class StateDiffSource:
    def __init__(self, state: FleetState, *, every: float = 0.2) -> None:
        self._state = state
        self._every = every
        self._version = -1
        self._status: dict[str, str] = {}
        self._rows: dict[str, tuple[tuple[ContainerRecord, ...], dict[str, ContainerRecord]]] = {}
        self._pending: deque[FleetEvent] = deque()
        self._seq = 0
        self._closed = False
        self._diff(emit=False)

    def close(self) -> None:
        self._closed = True

    def __aiter__(self) -> StateDiffSource:
        return self

    async def __anext__(self) -> FleetEvent | Lagged:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            await asyncio.sleep(self._every)
            if self._state.version != self._version:
                self._diff(emit=True)
        return self._pending.popleft()

    def _emit(self, type_: str, host: str, **fields: Any) -> None:
        self._seq += 1
        self._pending.append(
            FleetEvent(
                id=f"derived.{self._seq}",
                seq=self._seq,
                type=type_,
                host=host,
                time=self._state.clock(),
                **fields,
            )
        )

    def _diff(self, *, emit: bool) -> None:
        self._version = self._state.version
        for record in self._state.records():
            name, status = record.name, record.status.value
            before = self._status.get(name, "unknown")
            if emit and status != before:
                self._emit(
                    "host.changed",
                    name,
                    before=before,
                    after=status,
                    record={"last_error": record.last_error},
                )
            self._status[name] = status
            seen = self._rows.get(name)
            if seen is not None and seen[0] is record.containers:
                continue
            rows = {c.id: c for c in record.containers}
            if emit and seen is not None:
                for cid, now in rows.items():
                    was = seen[1].get(cid)
                    if was is None:
                        continue
                    fields = tuple(f for f in ("state", "health") if getattr(was, f) != getattr(now, f))
                    if fields:
                        code = exit_code_of(now) if "state" in fields else None
                        self._emit("container.changed", name, container=now, fields=fields, exit_code=code)
            self._rows[name] = (record.containers, rows)
