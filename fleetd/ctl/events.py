"""``fleetd events``: the fleet's event stream as it happens, one line per event (like ``docker events``).

2026-12-03T10:15:02.118Z  container.changed  d1/web1  die, exit code 137: running → exited
2026-12-03T10:15:07.004Z  host.changed       d2       up → down: cannot connect to tcp://…
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.text import Text

from fleetd.ctl.client import FleetClient
from fleetd.ctl.output import make_console, stable_colour
from fleetd.ctl.sse import fleet_events

__all__ = ["describe_event", "event_params", "events_command"]

STYLE = {"added": "green", "removed": "red", "changed": "yellow", "resynced": "cyan", "reset": "magenta"}


def event_params(args: argparse.Namespace) -> list[tuple[str, str]]:
    params = [("host", h) for h in args.host or []]
    params += [("type", t) for t in args.type or []]
    params += [("label", sel) for sel in args.label or []]
    if args.since:
        params.append(("last_event_id", args.since))
    return params


def describe_event(event: dict[str, Any]) -> tuple[str, str]:
    """(subject, what happened) in words: ``("d1/web1", "die, exit code 137: state exited")``."""
    kind = str(event.get("type", ""))
    host = str(event.get("host", ""))
    if kind.startswith("container."):
        c = event.get("container") or {}
        subject = f"{host}/{c.get('name', '?')}"
        parts = []
        if event.get("action"):
            parts.append(str(event["action"]))
        if event.get("exit_code") is not None:
            parts.append(f"exit code {event['exit_code']}")
        detail = ", ".join(parts)
        if kind == "container.changed" and event.get("fields"):
            detail += (": " if detail else "") + ", ".join(str(f) for f in event["fields"])
        state = f"{c.get('state', '')} ({c.get('status', '')})" if c.get("status") else c.get("state", "")
        return subject, f"{detail} → {state}" if detail else str(state)
    if kind == "host.changed":
        record = event.get("record") or {}
        text = f"{event.get('before', '?')} → {event.get('after', '?')}"
        if record.get("last_error"):
            text += f": {record['last_error']}"
        return host, text
    if kind == "host.resynced":
        return host, "resynced" + (" after a gap (events may be missing)" if event.get("gap") else "")
    if kind == "reset":
        return "", f"reset: {event.get('reason', '')} (re-list to catch up)"
    return host, json.dumps({k: v for k, v in event.items() if k not in ("id", "type", "time", "host")})


async def events_command(args: argparse.Namespace, api: FleetClient) -> int:
    console = make_console()
    async for frame in fleet_events(api, event_params(args)):
        event = frame.json()
        if args.json:
            sys.stdout.write(json.dumps(event, sort_keys=True, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            continue
        kind = str(event.get("type", frame.event))
        subject, what = describe_event(event)
        line = Text()
        line.append(str(event.get("time", "")) + "  ", style="dim")
        line.append(f"{kind:<18} ", style=STYLE.get(kind.rpartition(".")[2], ""))
        if subject:
            line.append(subject, style=stable_colour(subject))
            line.append("  ")
        line.append(what)
        console.print(line, no_wrap=True, crop=True, overflow="ellipsis")
        console.file.flush()
    return 0
