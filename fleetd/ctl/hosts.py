"""``fleetd hosts`` (the inventory with each host's health) and ``fleetd host H`` (one host in full)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final
from urllib.parse import quote

from rich.console import Console
from rich.text import Text

from fleetd.ctl.base import ago, since_text
from fleetd.ctl.client import FleetClient
from fleetd.ctl.output import Column, Table, make_console, print_json

__all__ = ["host_command", "host_table", "hosts_command", "state_cell"]

Item = dict[str, Any]

COLUMNS: Final = (
    Column("NAME", shrink=False),
    Column("STATE"),
    Column("CONTAINERS", justify="right", shrink=False),
    Column("RUNNING", justify="right", shrink=False),
    Column("ENGINE"),
    Column("LAST ERROR"),
)
STATE_STYLE: Final = {"up": "green", "down": "red", "error": "red", "unknown": "yellow", "disabled": "dim"}


def state_cell(h: Item, now: float | None = None) -> Text:
    """``up 3 hours``, ``down 2 minutes (stale)``: the state, for how long, and whether data is stale."""
    text = h["state"]
    if span := since_text(h.get("state_since"), now):
        text += f" {span}"
    if h.get("stale"):
        text += " (stale)"
    return Text(text, style=STATE_STYLE.get(h["state"], ""))


def engine_text(h: Item) -> str:
    if not h.get("server_version"):
        return ""
    return f"{h['server_version']} (API {h.get('api_version') or '?'})"


def host_table(hosts: list[Item], now: float | None = None) -> Table:
    table = Table(COLUMNS)
    for h in hosts:
        error = h.get("last_error") or ""
        table.add(
            h["name"],
            state_cell(h, now),
            str(h.get("containers", 0)),
            str(h.get("running", 0)),
            engine_text(h),
            Text(error, style="red") if error else None,
        )
    return table


async def fetch_hosts(args: argparse.Namespace, api: FleetClient) -> tuple[list[Item], str | None]:
    params = [("label", sel) for sel in getattr(args, "label", None) or []]
    if getattr(args, "state", None):
        params.append(("state", args.state))
    body, headers = await api.get("/api/v1/hosts", params)
    return list(body["hosts"]), headers.get("X-Fleet-Event-Id")


async def hosts_command(args: argparse.Namespace, api: FleetClient) -> int:
    hosts, _ = await fetch_hosts(args, api)
    if args.quiet:
        sys.stdout.write("".join(h["name"] + "\n" for h in hosts))
    elif args.json:
        print_json(hosts)
    else:
        host_table(hosts).render(make_console())
    return 0


def _size(n: int | None) -> str:
    if not n:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return str(n)


def _facts(h: Item) -> list[tuple[str, str | Text]]:
    labels = ", ".join(f"{k}={v}" for k, v in sorted((h.get("labels") or {}).items()))
    seen = h.get("last_seen")
    rows: list[tuple[str, str | Text]] = [
        ("Name", h["name"]),
        ("URL", h.get("url", "")),
        ("Labels", labels),
        ("State", state_cell(h)),
        ("State since", h.get("state_since") or ""),
        ("Last seen", f"{seen} ({ago(seen)})" if seen else "never"),
        ("Last error", Text(h.get("last_error") or "", style="red")),
        ("Containers", f"{h.get('containers', 0)} ({h.get('running', 0)} running)"),
        ("Images", "" if h.get("images") is None else str(h["images"])),
        ("Polled every", f"{h.get('interval', '')}s, timeout {h.get('timeout', '')}s"),
    ]
    if h.get("duplicate_engine_id"):
        rows.append(("Same engine ID as", ", ".join(h.get("duplicate_of") or [])))
    engine = h.get("engine") or {}
    if engine:
        rows += [
            ("Engine ID", engine.get("engine_id", "")),
            ("Engine name", engine.get("name", "")),
            ("Server version", f"{engine.get('server_version', '')} (API {engine.get('api_version', '')})"),
            ("Operating system", f"{engine.get('operating_system', '')} ({engine.get('os_type', '')})"),
            ("Kernel", engine.get("kernel_version", "")),
            ("Architecture", engine.get("architecture", "")),
            ("CPUs", str(engine.get("ncpu", ""))),
            ("Memory", _size(engine.get("mem_total"))),
            ("Storage driver", engine.get("storage_driver", "")),
        ]
    return rows


def _print_host(console: Console, h: Item) -> None:
    table = Table((Column("FIELD", shrink=False), Column("VALUE")))
    for key, value in _facts(h):
        table.add(key + ":", value)
    table.render(console, header=False)
    findings = list(h.get("findings") or [])
    if h.get("insecure_transport") and not any(f.get("code") == "insecure_transport" for f in findings):
        findings.insert(0, {"code": "insecure_transport", "message": "the daemon is reached over plain TCP"})
    console.print()
    if not findings:
        console.print(Text("Findings: none"))
        return
    console.print(Text("Findings:", style="bold"))
    for f in findings:
        console.print(
            Text.assemble("  ", (f.get("code", ""), "yellow"), "  ", f.get("message", "")), crop=True
        )


async def host_command(args: argparse.Namespace, api: FleetClient) -> int:
    body, _ = await api.get(f"/api/v1/hosts/{quote(args.name, safe='')}")
    if args.json:
        print_json(body)
    else:
        _print_host(make_console(), body)
    return 0
