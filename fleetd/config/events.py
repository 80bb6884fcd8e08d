"""``events:`` in the config: Engine event watching and the fleet event stream (docs/live.md).

events: false              # no Engine event watching at all (polling only)
events:
  enabled: true            # watch every host's /events (a host may say events: false)
  buffer: 10000            # fleet events kept for resuming SSE clients ...
  max_age: 15m             # ... none older than this
  max_subscribers: 1000    # open /api/v1/events streams; past it: 503
  queue: 1000              # frames one client may be behind before it is closed
  write_timeout: 30s       # a client that takes no frame this long is closed
  heartbeat: 15s           # ": ping" comment on an idle stream
  ping_connection: true    # liveness /_ping on a keep-alive connection of its own per host
                           # (false: through the pooled poll connections; one file
                           # descriptor less per host, more CPU per ping)
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetd.config.fields import Section, describe
from fleetd.config.yamlsrc import Map, Scalar

__all__ = ["EVENTS_KEYS", "EventsSettings", "read_events"]

EVENTS_KEYS = (
    "enabled",
    "buffer",
    "max_age",
    "max_subscribers",
    "queue",
    "write_timeout",
    "heartbeat",
    "ping_connection",
)


@dataclass(frozen=True, slots=True)
class EventsSettings:
    enabled: bool = True
    buffer: int = 10_000
    max_age: float = 900.0
    max_subscribers: int = 1000
    queue: int = 1000
    write_timeout: float = 30.0
    heartbeat: float = 15.0
    ping_connection: bool = True


def read_events(top: Section) -> EventsSettings:
    default = EventsSettings()
    node = top.get("events")
    if node is None:
        return default
    if isinstance(node, Scalar) and isinstance(node.value, bool):
        return EventsSettings(enabled=node.value)
    if not isinstance(node, Map):
        top.problem("events", f"expected true, false or a mapping, got {describe(node)}")
        return default
    sec = top.section("events", EVENTS_KEYS)
    if sec is None:
        return default
    enabled = sec.boolean("enabled")
    ping_connection = sec.boolean("ping_connection")
    return EventsSettings(
        enabled=default.enabled if enabled is None else enabled,
        buffer=sec.integer("buffer", minimum=1, maximum=10_000_000) or default.buffer,
        max_age=_or(sec.duration("max_age"), default.max_age),
        max_subscribers=sec.integer("max_subscribers", minimum=1) or default.max_subscribers,
        queue=sec.integer("queue", minimum=1) or default.queue,
        write_timeout=_or(sec.duration("write_timeout"), default.write_timeout),
        heartbeat=_or(sec.duration("heartbeat"), default.heartbeat),
        ping_connection=default.ping_connection if ping_connection is None else ping_connection,
    )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
