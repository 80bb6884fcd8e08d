"""``fleetd stop|start|restart|rm``: named containers (HOST/CONTAINER …) or a selector across the fleet.

The targets are shown first (a dry run), then confirmed unless ``--yes``; each target's outcome comes
back in a table, and the exit status is 1 when any target failed. With a selector fleetd's batch
endpoint does the work (one request, at most 20 calls in flight there); named containers are acted on
one request each, a few at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Final
from urllib.parse import quote

from rich.console import Console
from rich.text import Text

from fleetd.ctl.base import Ref, parse_ref
from fleetd.ctl.client import ACTION_TIMEOUT, FleetClient
from fleetd.ctl.errors import ApiFailure, CtlError
from fleetd.ctl.output import Column, Table, make_console, print_json
from fleetd.ctl.ps import hosts_with_labels

__all__ = ["action_command"]

Item = dict[str, Any]

VERBS: Final = {"stop": "Stop", "start": "Start", "restart": "Restart", "remove": "Remove"}
PARALLEL: Final = 8
TARGET_COLUMNS: Final = (
    Column("HOST", shrink=False), Column("CONTAINER ID", shrink=False), Column("NAME"), Column("STATE"),
)  # fmt: skip
RESULT_COLUMNS: Final = (
    Column("HOST", shrink=False), Column("CONTAINER ID", shrink=False), Column("NAME"), Column("RESULT"),
    Column("DETAIL"),
)  # fmt: skip


def _action(args: argparse.Namespace) -> str:
    return "remove" if args.verb == "rm" else str(args.verb)


def _selector(args: argparse.Namespace, hosts: list[str] | None) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    if hosts is not None:
        selector["host"] = hosts
    elif args.host:
        selector["host"] = args.host
    if args.label:
        selector["label"] = args.label
    if args.name:
        selector["name"] = args.name
    if args.state:
        selector["state"] = args.state
    return selector


def _options(args: argparse.Namespace) -> dict[str, Any]:
    action = _action(args)
    options: dict[str, Any] = {}
    if action in ("stop", "restart") and args.time is not None:
        options["t"] = args.time
    if action == "remove" and args.force:
        options["force"] = True
    return options


async def _batch(
    api: FleetClient, action: str, selector: dict[str, Any], options: dict[str, Any], dry: bool
) -> Item:
    body = {"action": action, "selector": selector, "dry_run": dry, **options}
    try:
        answer: Item = await api.json(
            "POST", "/api/v1/actions", body=body, role="operator", timeout=ACTION_TIMEOUT
        )
    except ApiFailure as exc:
        if exc.code == "no_match":
            raise CtlError(f"no container matches {_describe(selector)}; nothing was done") from None
        raise
    return answer


def _describe(selector: dict[str, Any]) -> str:
    parts = [f"--host {h}" for h in selector.get("host", [])] + [
        f"--label {sel}" for sel in selector.get("label", [])
    ]
    if "name" in selector:
        parts.append(f"--name {selector['name']}")
    if "state" in selector:
        parts.append(f"--state {selector['state']}")
    return " ".join(parts)


async def _resolve(api: FleetClient, ref: Ref) -> Item:
    """The container a HOST/CONTAINER names, from fleetd's aggregate; a failed lookup is a target too."""
    try:
        c, _ = await api.get(f"/api/v1/containers/{quote(ref.host, safe='')}/{quote(ref.container, safe='')}")
    except ApiFailure as exc:
        return {"host": ref.host, "id": "", "name": ref.container, "state": "", "error": exc.message}
    return {"host": c["host"], "id": c["id"], "name": c["name"], "state": c["state"], "stale": c.get("stale")}


async def _act_one(
    api: FleetClient, target: Item, action: str, options: dict[str, Any], gate: asyncio.Semaphore
) -> Item:
    if "error" in target:
        return {**target, "outcome": "failed", "error": {"message": target["error"]}}
    host, ref = quote(target["host"], safe=""), quote(target["id"], safe="")
    params: list[tuple[str, str]] = []
    if "t" in options:
        params.append(("t", str(options["t"])))
    if options.get("force"):
        params.append(("force", "true"))
    async with gate:
        try:
            if action == "remove":
                await api.json(
                    "DELETE",
                    f"/api/v1/containers/{host}/{ref}",
                    params,
                    role="operator",
                    timeout=ACTION_TIMEOUT,
                )
                return {**target, "outcome": "ok", "changed": True}
            answer = await api.json(
                "POST",
                f"/api/v1/containers/{host}/{ref}/{action}",
                params,
                role="operator",
                timeout=ACTION_TIMEOUT,
            )
        except ApiFailure as exc:
            if exc.status in (401, 403):
                raise
            return {
                **target,
                "outcome": "failed",
                "error": {"code": exc.code, "status": exc.status, "message": exc.message},
            }
    return {**target, "outcome": "ok", "changed": answer.get("changed", True)}


def _targets_table(targets: list[Item]) -> Table:
    table = Table(TARGET_COLUMNS)
    for t in targets:
        state = Text(t.get("state") or "", style="yellow" if t.get("stale") else "")
        if t.get("stale"):
            state.append(" (stale)")
        if t.get("error"):
            state = Text(str(t["error"]), style="red")
        table.add(t["host"], (t.get("id") or "")[:12], t["name"], state)
    return table


def _results_table(results: list[Item]) -> Table:
    table = Table(RESULT_COLUMNS)
    for r in results:
        detail: str | Text
        if r["outcome"] == "ok":
            outcome, detail = Text("ok", style="green"), "" if r.get("changed", True) else "unchanged"
        else:
            outcome, detail = (
                Text("failed", style="red"),
                Text((r.get("error") or {}).get("message", ""), style="red"),
            )
        table.add(r["host"], (r.get("id") or "")[:12], r["name"], outcome, detail)
    return table


def _confirm(action: str, targets: list[Item]) -> bool:
    hosts = len({t["host"] for t in targets})
    question = (
        f"{VERBS[action]} {len(targets)} container{'s' if len(targets) != 1 else ''} "
        f"on {hosts} host{'s' if hosts != 1 else ''}? [y/N] "
    )
    if not sys.stdin.isatty():
        raise CtlError("not asking for confirmation without a terminal; add --yes to go ahead (or --dry-run)")
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


async def action_command(args: argparse.Namespace, api: FleetClient) -> int:
    action = _action(args)
    options = _options(args)
    console = make_console()
    err = Console(file=sys.stderr, highlight=False, markup=False) if not args.json else None
    selecting = bool(args.label or args.host_label or args.host or args.name or args.state)
    if args.targets and selecting:
        raise CtlError(
            "give HOST/CONTAINER names or a selector (--label, --host-label, --host, ...), not both",
            exit_code=2,
        )
    if not args.targets and not selecting:
        raise CtlError(
            f"name what to {args.verb}: HOST/CONTAINER ..., or a selector such as --label app=web",
            exit_code=2,
        )
    if selecting:
        hosts = await hosts_with_labels(api, args.host_label, args.host) if args.host_label else None
        if hosts == []:
            raise CtlError(f"no host has {' and '.join(args.host_label)}; nothing was done")
        selector = _selector(args, hosts)
        targets = list((await _batch(api, action, selector, options, True))["targets"])
    else:
        refs = [parse_ref(t) for t in args.targets]
        targets = list(await asyncio.gather(*(_resolve(api, r) for r in refs)))
    if args.dry_run or not args.yes:
        if args.json and args.dry_run:
            print_json({"action": action, "dry_run": True, "targets": targets})
            return 0
        out = console if args.dry_run else (err or console)
        _targets_table(targets).render(out)
        if args.dry_run:
            return 0
        if not _confirm(action, targets):
            print("fleetd: nothing was done", file=sys.stderr)
            return 1
    if selecting:
        results = list((await _batch(api, action, selector, options, False))["targets"])
    else:
        gate = asyncio.Semaphore(PARALLEL)
        results = list(await asyncio.gather(*(_act_one(api, t, action, options, gate) for t in targets)))
    failed = [r for r in results if r["outcome"] != "ok"]
    if args.json:
        print_json(
            {
                "action": action,
                "targets": results,
                "summary": {"targets": len(results), "ok": len(results) - len(failed), "failed": len(failed)},
            }
        )
    else:
        _results_table(results).render(console)
        if failed:
            names = ", ".join(f"{r['host']}/{r['name']}" for r in failed)
            print(f"fleetd: {len(failed)} of {len(results)} failed: {names}", file=sys.stderr)
    return 1 if failed else 0
