"""``fleetd logs``: one container's log, or (with a selector) many merged, each line prefixed like stern.

    fleetd logs d1/web1 --tail 50            # the last 50 lines, stdout lines to stdout, stderr to stderr
    fleetd logs -f d1/web1                   # and follow
    fleetd logs -f --label app=web           # every matching container, merged: "d1/web1 │ line"

Followed logs read fleetd's NDJSON stream (one object per line, a final {"end": true} when the
container stops). Prefixes have one colour per host/container, the same in every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any
from urllib.parse import quote

from rich.console import Console
from rich.text import Text

from fleetd.ctl.base import parse_ref
from fleetd.ctl.client import FleetClient
from fleetd.ctl.errors import CtlError
from fleetd.ctl.output import colour_wanted, stable_colour

__all__ = ["logs_command"]


class _Printer:
    """Writes log lines as they come: raw for one container, prefixed for many."""

    def __init__(self, prefixed: bool, timestamps: bool, as_json: bool) -> None:
        self.prefixed = prefixed
        self.timestamps = timestamps
        self.as_json = as_json
        self.out = self._console(sys.stdout)
        self.err = self._console(sys.stderr)

    @staticmethod
    def _console(stream: IO[str]) -> Console:
        colour = colour_wanted(stream)
        return Console(
            file=stream,
            color_system="auto" if colour else None,
            no_color=not colour,
            force_terminal=None if colour else False,
            highlight=False,
            markup=False,
            emoji=False,
            soft_wrap=True,
        )

    def line(self, entry: dict[str, Any], host: str | None = None, name: str | None = None) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        text = Text()
        if self.prefixed:
            key = f"{entry.get('host', host)}/{entry.get('container', name)}"
            text.append(key, style=stable_colour(key))
            text.append(" │ ")
        if self.timestamps and entry.get("time"):
            text.append(str(entry["time"]) + " ", style="dim")
        text.append(str(entry.get("line", "")))
        console = self.err if entry.get("stream") == "stderr" and not self.prefixed else self.out
        console.print(text, soft_wrap=True, crop=False)
        console.file.flush()


def _params(args: argparse.Namespace) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    if args.follow:
        params.append(("follow", "1"))
    if args.tail is not None:
        params.append(("tail", args.tail))
    if args.since:
        params.append(("since", args.since))
    if args.timestamps:
        params.append(("timestamps", "true"))
    return params


async def _follow(api: FleetClient, path: str, params: list[tuple[str, str]], printer: _Printer) -> int:
    async for raw in api.lines(path, params, role="operator"):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            raise CtlError(f"{path}: the stream sent a line that is not JSON: {raw[:80]!r}") from None
        if entry.get("end"):
            reason = entry.get("reason")
            if reason and not printer.as_json:
                print(f"fleetd: log stream ended: {reason}", file=sys.stderr)
            return 0
        printer.line(entry)
    return 0


async def logs_command(args: argparse.Namespace, api: FleetClient) -> int:
    selecting = bool(args.label or args.host)
    if args.target and selecting:
        raise CtlError("give HOST/CONTAINER or a selector (--label, --host), not both", exit_code=2)
    if not args.target and not selecting:
        raise CtlError("name a container (HOST/CONTAINER) or select some with --label k=v", exit_code=2)
    params = _params(args)
    if selecting:
        params = (
            [("label", sel) for sel in args.label or []] + [("host", h) for h in args.host or []] + params
        )
        printer = _Printer(prefixed=True, timestamps=args.timestamps, as_json=args.json)
        if args.follow:
            return await _follow(api, "/api/v1/logs", params, printer)
        body, _ = await api.get("/api/v1/logs", params, role="operator")
        for entry in body.get("lines", []):
            printer.line(entry)
        return 0
    ref = parse_ref(args.target)
    path = f"/api/v1/containers/{quote(ref.host, safe='')}/{quote(ref.container, safe='')}/logs"
    printer = _Printer(prefixed=args.prefix, timestamps=args.timestamps, as_json=args.json)
    if args.follow:
        return await _follow(api, path, params, printer)
    body, _ = await api.get(path, params, role="operator")
    for entry in body.get("lines", []):
        printer.line(entry, body.get("host"), body.get("name"))
    if body.get("truncated"):
        print(
            "fleetd: the log was cut at fleetd's size limit; use --tail or --since for less", file=sys.stderr
        )
    return 0
