"""From fleet events to the notices webhooks send: host down/recovered, container died/OOM/unhealthy."""

from __future__ import annotations

import re

import msgspec

from fleetd.config.notify import WebhookSettings
from fleetd.fleet.feed import FleetEvent
from fleetd.fleet.records import ContainerRecord
from fleetd.fleet.state import label_matches
from fleetd.util.timefmt import rfc3339

__all__ = ["Notice", "NoticeContainer", "exit_code_of", "matches", "notices_for"]

_DOWN = ("down", "error")
_EXITED = re.compile(r"Exited \((-?\d+)\)")


class NoticeContainer(msgspec.Struct, frozen=True):
    id: str
    name: str
    image: str
    state: str
    status: str
    health: str
    labels: dict[str, str]


class Notice(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The JSON body of one webhook POST."""

    kind: str  # host.down | host.recovered | container.died | container.oom | container.unhealthy
    time: str  # RFC 3339, when fleetd saw it
    host: str
    event_id: str | None = None  # the fleet event's id (the SSE stream's id), when there is one
    before: str | None = None  # host.*: the host's status before and after
    after: str | None = None
    error: str | None = None  # host.down: why
    container: NoticeContainer | None = None
    exit_code: int | None = None
    action: str | None = None  # the Engine's action that caused it (die, oom, health_status), when known


def exit_code_of(c: ContainerRecord) -> int | None:
    """The exit code in the Engine's ``Status`` ("Exited (137) 2 seconds ago"), when it says one."""
    m = _EXITED.match(c.status)
    return int(m.group(1)) if m else None


def _container(c: ContainerRecord) -> NoticeContainer:
    return NoticeContainer(c.id, c.name, c.image, c.state, c.status, c.health, c.labels)


def notices_for(event: FleetEvent) -> list[Notice]:
    when = rfc3339(event.time) or ""
    if event.type == "host.changed":
        before, after = event.before or "unknown", event.after or "unknown"
        error = None
        if event.record is not None and isinstance(event.record.get("last_error"), str):
            error = event.record["last_error"]
        if after in _DOWN and before not in _DOWN:
            kind = "host.down"
        elif after == "up" and before in _DOWN:
            kind, error = "host.recovered", None
        else:
            return []
        return [
            Notice(
                kind=kind,
                time=when,
                host=event.host,
                event_id=event.id,
                before=before,
                after=after,
                error=error,
            )
        ]
    c = event.container
    if event.type not in ("container.changed", "container.added") or c is None:
        return []
    action = (event.action or "").split(":", 1)[0].strip() or None
    if event.type == "container.added" and action not in ("oom", "die"):
        return []  # a container seen for the first time (a poll, a create): nothing happened to it
    out: list[Notice] = []

    def notice(kind: str, exit_code: int | None = None) -> Notice:
        return Notice(
            kind=kind,
            time=when,
            host=event.host,
            event_id=event.id,
            container=_container(c),
            exit_code=exit_code,
            action=event.action,
        )

    # dockerd sends oom, then die; when one refresh sees both, the change carries "oom" only. A
    # container that was created, started and died between two refreshes is first seen dead: added,
    # with the death as its action.
    stopped = c.state in ("exited", "dead") and ("state" in event.fields or action == "oom")
    if action == "oom":  # the kernel killed a process of it; when that was its main one, it died too
        out.append(notice("container.oom"))
    if action == "die" or stopped:
        code = event.exit_code if event.exit_code is not None else exit_code_of(c)
        out.append(notice("container.died", code))
    if "health" in event.fields and c.health == "unhealthy":
        out.append(notice("container.unhealthy"))
    return out


def matches(settings: WebhookSettings, notice: Notice) -> bool:
    """The receiver asked for this kind, on this host; ``labels`` filter container notices only."""
    if notice.kind not in settings.events:
        return False
    if settings.hosts and notice.host not in settings.hosts:
        return False
    if settings.labels and notice.container is not None:
        return label_matches(notice.container.labels, settings.labels)
    return True
