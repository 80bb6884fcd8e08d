"""Test fleets written the way fleetd writes them: through FleetState's writer methods only.

``poll_ok`` and ``poll_failed`` are what the poller hands ``FleetState.poll_done``; event watchers'
writes are the state's own methods (``set_host_status``, ``upsert_containers``, ...). A test that sets
a record's field itself would see answers fleetd can never give (the index, the tallies and the engine
IDs are kept by the writer), so tests/conftest.py installs :func:`guard_records`: such a write fails.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from fleetd.fleet.records import (
    ContainerRecord,
    EngineFacts,
    HostRecord,
    HostStatus,
    ImageRecord,
    diff_containers,
)
from fleetd.fleet.state import FleetState, PollFailure, PollSuccess

__all__ = ["WriteAroundTheWriter", "guard_records", "no_facts", "poll_failed", "poll_ok"]


def no_facts(name: str = "") -> EngineFacts:
    """What an /info without an engine ID gives (never a duplicate of another host's)."""
    return EngineFacts("", name, "", "", "", "", "", "", 0, 0, "")


def poll_ok(
    state: FleetState,
    name: str,
    containers: Iterable[ContainerRecord] = (),
    *,
    at: float | None = None,
    facts: EngineFacts | None = None,
    images: Iterable[ImageRecord] | None = None,
    info_raw: bytes = b"{}",
    duration: float = 0.01,
) -> HostRecord:
    """One answered poll of ``name`` at ``at`` (the state's clock): its rows, in the order given."""
    record = state.get(name)
    assert record is not None, name
    at = state.clock() if at is None else at
    rows = tuple(containers)
    state.poll_started(name, at)
    state.poll_done(
        name,
        duration,
        PollSuccess(
            at,
            facts if facts is not None else no_facts(name),
            msgspec.Raw(info_raw),
            rows,
            diff_containers(record.containers, rows),
            None if images is None else tuple(images),
        ),
    )
    return record


def poll_failed(
    state: FleetState,
    name: str,
    message: str = "connection refused",
    *,
    at: float | None = None,
    status: HostStatus = HostStatus.DOWN,
    duration: float = 0.01,
) -> HostRecord:
    """One failed poll of ``name`` at ``at``: the host is ``status`` (DOWN or ERROR), its data kept."""
    record = state.get(name)
    assert record is not None, name
    at = state.clock() if at is None else at
    state.poll_started(name, at)
    state.poll_done(name, duration, PollFailure(at, status, message))
    return record


class WriteAroundTheWriter(AssertionError):
    pass


_inside = [0]  # FleetState calls under way (its methods write records; nothing else may)


def _guarded_setattr(self: HostRecord, name: str, value: object) -> None:
    if not _inside[0] and not name.startswith("_"):  # _tally/_tallied: a reader's cache
        raise WriteAroundTheWriter(
            f"HostRecord.{name} of {getattr(getattr(self, 'settings', None), 'name', '?')!r} written around "
            "FleetState's writer: use tests/writes.py (poll_ok, poll_failed) or a FleetState writer method"
        )
    object.__setattr__(self, name, value)


def _inside_the_state(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        _inside[0] += 1
        try:
            return method(*args, **kwargs)
        finally:
            _inside[0] -= 1

    return call


def guard_records() -> None:
    """From now on (in this process) a HostRecord field written outside a method of FleetState's
    writer (fleet/state.py; its reads are inherited from fleet/state_reads.py and write nothing)
    raises :class:`WriteAroundTheWriter`. Costs fleetd nothing: only the tests' process is patched."""
    if HostRecord.__setattr__ is _guarded_setattr:  # type: ignore[comparison-overlap]
        return
    for attr, value in list(vars(FleetState).items()):
        if inspect.isfunction(value) and not inspect.iscoroutinefunction(value) and not attr.startswith("__"):
            setattr(FleetState, attr, _inside_the_state(value))
    HostRecord.__setattr__ = _guarded_setattr  # type: ignore[assignment,method-assign]
