"""``fleetd ps``: the containers of the whole fleet, like ``docker ps`` with a HOST column.

Running containers only unless ``-a``; rows of hosts fleetd cannot reach right now are marked stale
(their last known state, with its age), and a line on stderr says which hosts and why.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from rich.console import Console
from rich.text import Text

from fleetd.ctl.base import ago
from fleetd.ctl.client import FleetClient
from fleetd.ctl.output import Column, Table, make_console, print_json
from fleetd.ctl.template import Template, parse_template

__all__ = ["FIELDS", "container_table", "fetch_containers", "ports_text", "ps_command", "stale_notes"]

Item = dict[str, Any]

COLUMNS: Final = (
    Column("HOST", shrink=False),
    Column("CONTAINER ID", shrink=False),
    Column("NAME"),
    Column("IMAGE"),
    Column("STATUS"),
    Column("PORTS"),
    Column("STALE"),
)
HEADERS: Final = {
    "ID": "CONTAINER ID", "Names": "NAMES", "CreatedAt": "CREATED AT", "RunningFor": "CREATED",
    "Labels": "LABELS", "Host": "HOST", "Stale": "STALE", "ObservedAt": "OBSERVED AT",
}  # fmt: skip


def ports_text(ports: list[dict[str, Any]]) -> str:
    """``0.0.0.0:8080->80/tcp, 443/tcp`` the way ``docker ps`` prints them."""
    parts = []
    for p in ports:
        if p.get("public_port"):
            ip = p.get("ip") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            parts.append(f"{host}:{p['public_port']}->{p['private_port']}/{p['type']}")
        else:
            parts.append(f"{p['private_port']}/{p['type']}")
    return ", ".join(dict.fromkeys(parts))


def _fields(no_trunc: bool) -> Mapping[str, Callable[[Item], Any]]:
    return {
        "ID": lambda c: c["id"] if no_trunc else c["id"][:12],
        "Names": lambda c: ",".join(c.get("names") or [c["name"]]),
        "Name": lambda c: c["name"],
        "Image": lambda c: c["image"],
        "ImageID": lambda c: c["image_id"],
        "Command": lambda c: f'"{c["command"]}"' if no_trunc else f'"{_cut(c["command"], 20)}"',
        "CreatedAt": lambda c: c.get("created") or "",
        "RunningFor": lambda c: ago(c.get("created")),
        "Ports": lambda c: ports_text(c.get("ports") or []),
        "State": lambda c: c["state"],
        "Status": lambda c: c["status"],
        "Health": lambda c: c.get("health", ""),
        "Labels": lambda c: c.get("labels") or {},
        "Host": lambda c: c["host"],
        "Stale": lambda c: bool(c.get("stale")),
        "ObservedAt": lambda c: c.get("observed_at") or "",
    }


FIELDS: Final = _fields(no_trunc=True)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _status(c: Item) -> Text:
    status = c["status"]
    state = c["state"]
    if c.get("stale"):
        return Text(status, style="yellow")
    if state == "running":
        style = "red" if c.get("health") == "unhealthy" else "green"
    elif state in ("exited", "dead"):
        style = "dim" if status.startswith("Exited (0)") else "red"
    else:
        style = "yellow"
    return Text(status, style=style)


def container_table(containers: list[Item], *, no_trunc: bool = False, now: float | None = None) -> Table:
    table = Table(COLUMNS)
    for c in containers:
        stale = (
            Text(f"stale (seen {ago(c.get('observed_at'), now)})", style="yellow") if c.get("stale") else None
        )
        table.add(
            c["host"],
            c["id"] if no_trunc else c["id"][:12],
            c["name"],
            c["image"],
            _status(c),
            ports_text(c.get("ports") or []),
            stale,
        )
    return table


def query_params(args: argparse.Namespace, hosts: list[str] | None) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = [("host", h) for h in (hosts if hosts is not None else args.host or [])]
    params += [("label", sel) for sel in args.label or []]
    if args.state:
        params.append(("state", args.state))
    elif not args.all:
        params.append(("state", "running"))
    if args.image:
        params.append(("image", args.image))
    if args.name:
        params.append(("name", args.name))
    return params


async def hosts_with_labels(api: FleetClient, labels: list[str], wanted: list[str] | None) -> list[str]:
    """The hosts having every ``--host-label`` (and among ``--host``, when given)."""
    body, _ = await api.get("/api/v1/hosts", [("label", sel) for sel in labels])
    names = [h["name"] for h in body["hosts"]]
    return [n for n in names if not wanted or n in wanted]


async def fetch_containers(args: argparse.Namespace, api: FleetClient) -> tuple[list[Item], str | None]:
    """The containers ``args`` select, and the ``X-Fleet-Event-Id`` of that answer (None if not sent)."""
    hosts: list[str] | None = None
    if args.host_label:
        hosts = await hosts_with_labels(api, args.host_label, args.host)
        if not hosts:
            return [], None
    body, headers = await api.get("/api/v1/containers", query_params(args, hosts))
    return list(body["containers"]), headers.get("X-Fleet-Event-Id")


async def stale_notes(api: FleetClient, containers: list[Item]) -> list[str]:
    """One sentence per host whose rows are stale: its state and why."""
    stale_hosts: dict[str, int] = {}
    for c in containers:
        if c.get("stale"):
            stale_hosts[c["host"]] = stale_hosts.get(c["host"], 0) + 1
    if not stale_hosts:
        return []
    body, _ = await api.get("/api/v1/hosts")
    by_name = {h["name"]: h for h in body["hosts"]}
    notes = []
    for name, count in stale_hosts.items():
        h = by_name.get(name, {})
        why = f"host {name} is {h.get('state', 'unknown')}"
        if h.get("last_seen"):
            why += f", last seen {ago(h['last_seen'])}"
        if h.get("last_error"):
            why += f": {h['last_error']}"
        notes.append(f"{count} container{'s' if count != 1 else ''} of {name} shown as last known ({why})")
    return notes


def _print_template(console: Console, template: Template, containers: list[Item]) -> None:
    if template.table:
        table = Table([Column(h) for h in template.headers(HEADERS)])
        for c in containers:
            table.add(*template.render_row(c, c))
        table.render(console)
        return
    for c in containers:
        console.file.write(template.render(c, c) + "\n")


async def ps_command(args: argparse.Namespace, api: FleetClient) -> int:
    template = None
    if args.format and args.format.strip() != "table":
        template = parse_template(args.format, _fields(args.no_trunc))
    containers, _ = await fetch_containers(args, api)
    console = make_console()
    if args.quiet:
        for c in containers:
            sys.stdout.write((c["id"] if args.no_trunc else c["id"][:12]) + "\n")
    elif args.json:
        print_json(containers)
    elif template is not None:
        _print_template(console, template, containers)
    else:
        container_table(containers, no_trunc=args.no_trunc).render(console)
    sys.stdout.flush()
    if not args.quiet and not args.json:
        for note in await stale_notes(api, containers):
            print(f"fleetd: {note}", file=sys.stderr)
    return 0
