"""``fleetd snapshot take|list|show|diff``: the stored snapshots of a running fleetd, over its API.

The offline forms stay as they were: ``fleetd snapshot --config F`` polls the hosts itself once, and
``fleetd diff A B`` compares files or ids in a database file; these sub-verbs ask a running fleetd.
``diff`` exits like diff(1): 0 no changes, 1 changes, 2 trouble.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from fleetd.ctl.client import FleetClient
from fleetd.ctl.errors import CtlError
from fleetd.ctl.output import Column, Table, make_console, print_json
from fleetd.snapshot.diff import SnapshotDiff
from fleetd.snapshot.table import diff_rows

__all__ = ["snapshot_diff", "snapshot_list", "snapshot_show", "snapshot_take"]

Item = dict[str, Any]
BASE: Final = "/api/v1/snapshots"

LIST_COLUMNS: Final = (
    Column("ID", justify="right", shrink=False), Column("TAKEN AT", shrink=False), Column("TRIGGER"),
    Column("HOSTS", justify="right"), Column("UP", justify="right"), Column("FAILED", justify="right"),
    Column("STALE", justify="right"), Column("CONTAINERS", justify="right"), Column("RUNNING", justify="right"),
)  # fmt: skip
DIFF_COLUMNS: Final = (
    Column("HOST", shrink=False), Column("CONTAINER"), Column("CHANGE", shrink=False), Column("FIELD"),
    Column("OLD"), Column("NEW"),
)  # fmt: skip
HOST_COLUMNS: Final = (
    Column("HOST", shrink=False), Column("STATE"), Column("CONTAINERS", justify="right"),
    Column("RUNNING", justify="right"), Column("ENGINE"), Column("LAST ERROR"),
)  # fmt: skip


def _ref(text: str) -> str:
    if text != "latest" and not (text.isdigit() and int(text) > 0):
        raise CtlError(
            f"{text!r}: a snapshot is named by its id (a positive number) or 'latest'", exit_code=2
        )
    return text


def _counts(info: Item) -> str:
    c = info.get("counts") or {}
    return (
        f"{c.get('hosts', 0)} hosts ({c.get('hosts_up', 0)} up, {c.get('hosts_failed', 0)} failed, "
        f"{c.get('hosts_stale', 0)} stale), {c.get('containers', 0)} containers ({c.get('running', 0)} running)"
    )


async def snapshot_take(args: argparse.Namespace, api: FleetClient) -> int:
    info = await api.json("POST", BASE)
    if args.json:
        print_json(info)
    else:
        print(f"snapshot {info['id']} taken at {info['taken_at']}: {_counts(info)}")
    return 0


async def snapshot_list(args: argparse.Namespace, api: FleetClient) -> int:
    params = [("limit", str(args.limit))]
    if args.since:
        params.append(("since", args.since))
    if args.until:
        params.append(("until", args.until))
    body, _ = await api.get(BASE, params)
    items = list(body["snapshots"])
    if args.quiet:
        sys.stdout.write("".join(f"{s['id']}\n" for s in items))
    elif args.json:
        print_json(items)
    else:
        table = Table(LIST_COLUMNS)
        for s in items:
            c = s.get("counts") or {}
            table.add(
                str(s["id"]), s["taken_at"], s.get("trigger", ""),
                *(str(c.get(k, 0)) for k in ("hosts", "hosts_up", "hosts_failed", "hosts_stale", "containers", "running")),
            )  # fmt: skip
        table.render(make_console())
        if body.get("total", 0) > len(items) and not args.quiet:
            print(f"fleetd: {len(items)} of {body['total']} shown; use --limit", file=sys.stderr)
    return 0


async def snapshot_show(args: argparse.Namespace, api: FleetClient) -> int:
    path = f"{BASE}/{_ref(args.id)}"
    if args.format:
        raw, _ = await api.request("GET", path, [("format", args.format)], accept="*/*")
        if args.output:
            try:
                await asyncio.to_thread(Path(args.output).write_bytes, raw)
            except OSError as exc:
                raise CtlError(f"{args.output}: {exc.strerror or exc}") from None
        else:
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
        return 0
    snapshot, _ = await api.get(path)
    if args.json:
        print_json(snapshot)
        return 0
    print(
        f"snapshot {snapshot['id']} taken at {snapshot['taken_at']} ({snapshot.get('trigger')}): {_counts(snapshot)}"
    )
    table = Table(HOST_COLUMNS)
    for h in snapshot.get("hosts", []):
        containers = h.get("containers") or []
        engine = h.get("engine") or {}
        state = h["state"] + (" (stale)" if h.get("stale") else "")
        table.add(
            h["name"], state, str(len(containers)),
            str(sum(1 for c in containers if c.get("state") == "running")),
            engine.get("server_version", ""), h.get("last_error") or "",
        )  # fmt: skip
    table.render(make_console())
    return 0


async def snapshot_diff(args: argparse.Namespace, api: FleetClient) -> int:
    refs = [_ref(r) for r in args.ids]
    if len(refs) not in (1, 2):
        raise CtlError("snapshot diff takes NEW (against the one before it) or OLD NEW", exit_code=2)
    params = [("against", refs[0])] if len(refs) == 2 else []
    body, _ = await api.get(f"{BASE}/{refs[-1]}/diff", params)
    diff = msgspec.convert(body, SnapshotDiff)
    if args.json:
        print_json(body)
    else:
        old, new = diff.old, diff.new
        print(f"snapshot {old.id} ({old.taken_at}) → {new.id} ({new.taken_at})")
        rows = diff_rows(diff)
        if not rows:
            print("no changes")
        else:
            table = Table(DIFF_COLUMNS)
            for row in rows:
                table.add(*row)
            table.render(make_console())
    empty = not (diff.hosts_added or diff.hosts_removed or diff.hosts_changed or diff.containers)
    return 0 if empty else 1
