"""Selecting containers across the fleet for a batch action, from the aggregate.

Fields combine with AND. ``name`` matches a container name exactly or as a glob
(:func:`fleetd.fleet.match.container_name_matches`: ``web-*``, ``db-?``), never as a substring: ``web``
does not select ``webhook`` — the same rule as the container list's ``?name=``. Stale containers of hosts that are down are selected too; acting on them reports the
host's error.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from fleetd.fleet.match import CONTAINER_STATES, container_name_matches, label_matches
from fleetd.fleet.state import FleetState
from fleetd.ops.targets import no_such_host

__all__ = ["CONTAINER_STATES", "Selector", "SelectorError", "Target", "resolve", "validate"]



class SelectorError(ValueError):
    pass


class Selector(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    host: list[str] | None = None
    host_label: list[str] | None = None  # hosts carrying every one of these labels (k or k=v)
    label: list[str] | None = None
    name: str | None = None
    state: str | None = None

    def is_empty(self) -> bool:
        return not (self.host or self.host_label or self.label or self.name or self.state)


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    id: str
    name: str
    state: str
    stale: bool


def validate(selector: Selector | None, state: FleetState) -> Selector:
    if selector is None or selector.is_empty():
        raise SelectorError(
            "a selector is required and must name at least one of host, host_label, label, name, state "
            '(to act on every container say so: {"name": "*"})'
        )
    for host in selector.host or ():
        if host not in state:
            raise SelectorError(f"selector.host: {no_such_host(host)}")
    for field, given in (("label", selector.label), ("host_label", selector.host_label)):
        for sel in given or ():
            if not sel.partition("=")[0]:
                raise SelectorError(f"selector.{field}: {sel!r} must be 'key' or 'key=value'")
    if selector.state is not None and selector.state not in CONTAINER_STATES:
        raise SelectorError(
            f"selector.state must be one of {', '.join(sorted(CONTAINER_STATES))}; got {selector.state!r}"
        )
    if selector.name is not None and not selector.name:
        raise SelectorError("selector.name must not be empty")
    return selector


def resolve(state: FleetState, selector: Selector, now: float | None = None) -> list[Target]:
    """Every container the selector matches, by host then name."""
    now = state.clock() if now is None else now
    hosts = set(selector.host or ())
    out: list[Target] = []
    for record in state.sorted_records():
        if hosts and record.name not in hosts:
            continue
        if selector.host_label and not label_matches(dict(record.settings.labels), selector.host_label):
            continue
        stale = record.is_stale(now)
        for c in record.containers:
            if selector.state is not None and c.state != selector.state:
                continue
            if selector.label and not label_matches(c.labels, selector.label):
                continue
            if selector.name is not None and not container_name_matches(c, selector.name):
                continue
            out.append(Target(host=record.name, id=c.id, name=c.name, state=c.state, stale=stale))
    return out
