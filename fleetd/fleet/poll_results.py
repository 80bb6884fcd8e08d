"""What one poll of one host brings the state's writer (``FleetState.poll_done``)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from fleetd.fleet.records import ContainerDiff, ContainerRecord, EngineFacts, HostStatus, ImageRecord

__all__ = ["PollFailure", "PollSuccess"]


@dataclass(frozen=True, slots=True)
class PollSuccess:
    """A poll that answered: the host's data as of ``at`` (wall clock)."""

    at: float
    facts: EngineFacts
    info_raw: msgspec.Raw
    containers: tuple[ContainerRecord, ...]
    diff: ContainerDiff  # against the previous poll's containers
    images: tuple[ImageRecord, ...] | None = None  # None: not listed this time
    stamp: int = 0  # RowClock stamp taken when the list was sent (0: no ordering guard)
    sent_at: float = 0.0  # loop time the list was sent (drift judgement)


@dataclass(frozen=True, slots=True)
class PollFailure:
    at: float
    status: HostStatus  # DOWN or ERROR
    message: str
