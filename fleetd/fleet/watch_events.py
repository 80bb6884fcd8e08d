"""What one Engine event means for the fleet's rows (engine-events.md E9, P2), and dedupe.

Only memory is touched here: the watcher's read loop calls these for every event and never
waits on anything but the stream.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from fleetd.dockerapi.events import EngineEvent

__all__ = ["NO_ROW_CHANGE", "REMOVAL", "Cause", "Dedupe", "Effect", "classify", "merge_cause"]

#: Container actions that leave the ``/containers/json`` row as it was (dockerd and podman).
NO_ROW_CHANGE: Final = frozenset(
    {
        "exec_create",
        "exec_start",
        "exec_die",
        "exec_detach",
        "attach",
        "detach",
        "resize",
        "top",
        "copy",
        "archive-path",
        "extract-to-dir",
        "export",
        "commit",
        "prune",
        # podman's own names
        "exec",
        "exec_died",
        "mount",
        "unmount",
        "sync",
        "init",
        "cleanup",
        "checkpoint",
    }
)
#: dockerd says ``destroy``, podman ``remove``: the row is gone.
REMOVAL: Final = frozenset({"destroy", "remove"})
_STICKY: Final = frozenset({"oom", "die"})
_AFTER_DEATH: Final = frozenset({"die", "stop", "kill"})
_REBORN: Final = frozenset({"start", "restart", "create", "unpause"})


class Effect(enum.Enum):
    NONE = "none"
    DIRTY = "dirty"  # refresh this container's row
    REMOVED = "removed"  # the row is gone (confirmed by the refresh, which finds no row)


@dataclass(frozen=True, slots=True)
class Cause:
    """The upstream reason of a row change, as carried by the fleet event."""

    action: str
    exit_code: int | None = None
    time_nano: int = 0


def classify(event: EngineEvent) -> tuple[Effect, str]:
    """(effect, container id) of one event; anything unknown that names a container is dirty
    (a needless refresh costs one small request, a missed change is a lie)."""
    if event.Type == "network":
        cid = event.Actor.Attributes.get("container", "")
        return (Effect.DIRTY, cid) if cid else (Effect.NONE, "")
    if event.Type != "container" or not event.Actor.ID:
        return Effect.NONE, ""
    action = event.action
    if action in NO_ROW_CHANGE:
        return Effect.NONE, ""
    if action in REMOVAL:
        return Effect.REMOVED, event.Actor.ID
    return Effect.DIRTY, event.Actor.ID


def _exit_code(event: EngineEvent) -> int | None:
    attrs = event.Actor.Attributes
    raw = attrs.get("exitCode") or attrs.get("containerExitCode")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def merge_cause(previous: Cause | None, event: EngineEvent) -> Cause:
    """The reason to report when ``event`` joins ``previous`` before the row is refreshed: the
    latest action, except that a removal is never overridden, and the ``stop``/``kill`` that
    follow a ``die`` (or an ``oom``) do not hide it. An exit code, once known, is kept."""
    action = event.action
    code = _exit_code(event)
    if previous is None:
        return Cause(action, code, event.time_nano)
    keep_code = code if code is not None else previous.exit_code
    if action in _REBORN and code is None:
        keep_code = None  # the exit code belongs to the process that died, not to this one
    if previous.action in REMOVAL or (previous.action in _STICKY and action in _AFTER_DEATH):
        return Cause(previous.action, keep_code, previous.time_nano)
    return Cause(action, keep_code, event.time_nano)


class Dedupe:
    """The keys of the last ``size`` events: a replay after a reconnect repeats some of them,
    and dockerd may send one event twice around a subscription (E2)."""

    __slots__ = ("_keys", "_size")

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._keys: OrderedDict[tuple[int, str, str, str], None] = OrderedDict()

    def seen(self, event: EngineEvent) -> bool:
        """True when this event was seen before; remembers it otherwise."""
        key = event.key()
        if key in self._keys:
            return True
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return False

    def __contains__(self, key: object) -> bool:
        return key in self._keys
