"""``fleetd snapshot`` and ``fleetd diff``: snapshots from the command line, no running fleetd needed.

    fleetd snapshot --config /etc/fleetd/fleetd.yaml --output fleet.csv     # format from the extension
    fleetd diff monday.json today.json           # two files (JSON, YAML or CSV)
    fleetd diff 41 latest --config F --json      # two ids in the database the config names

``snapshot`` polls every enabled host once with the same Engine client and connection pools as
``fleetd run`` and writes what it got (the file atomically); it never opens the database. Exit status:
0 when every enabled host answered, 1 when some did not (the snapshot still has them, with their
errors), 2 when nothing could be written (bad config, unwritable output).

``diff`` exits like diff(1): 0 when nothing changed, 1 when something did, 2 on trouble.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Final, cast

import msgspec

from fleetd.config import ConfigError, Settings, load_config
from fleetd.snapshot.export import (
    FORMATS,
    Format,
    SnapshotFormatError,
    detect_format,
    dumps,
    format_from_name,
    loads,
)
from fleetd.snapshot.model import Snapshot

__all__ = ["add_commands", "diff_command", "one_shot", "snapshot_command"]

DEFAULT_CONFIG: Final = "/etc/fleetd/fleetd.yaml"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``snapshot`` and ``diff`` on the subparsers of ``fleetd``."""
    p = sub.add_parser(
        "snapshot",
        help="poll every host once and write a snapshot (exit 1 if some host did not answer)",
        description="Poll every enabled host once and write the snapshot; never touches the database.",
    )
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    p.add_argument("--output", "-o", metavar="FILE", help="write here (atomically) instead of stdout")
    p.add_argument(
        "--format", "-f", choices=FORMATS, help="default: from the output file's extension, else json"
    )
    p.set_defaults(func=snapshot_command)

    p = sub.add_parser(
        "diff",
        help="compare two snapshots: files, or ids in the configured database",
        description="Compare two snapshots. OLD and NEW are files (JSON, YAML or CSV) or snapshot ids "
        "('latest' too) in the database named by --config. Exit 0: no changes, 1: changes, 2: trouble.",
    )
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--json", action="store_true", help="print the diff as JSON")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="for snapshot ids")
    p.set_defaults(func=diff_command)


def _fail(message: str) -> int:
    print(f"fleetd: {message}", file=sys.stderr)
    return 2


def _load_settings(path: str) -> Settings | None:
    try:
        return load_config(Path(path))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


# -- fleetd snapshot -----------------------------------------------------------------------------------


async def one_shot(settings: Settings) -> Snapshot:
    """Poll every enabled host of ``settings`` once and build the snapshot."""
    from fleetd.runtime import Fleet

    return await Fleet.one_shot(settings)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def snapshot_command(args: argparse.Namespace) -> int:
    from fleetd.fleet.records import HostStatus
    from fleetd.logconfig import configure_logging

    settings = _load_settings(args.config)
    if settings is None:
        return 2
    configure_logging("warning", settings.log.format)  # stderr; host failures, not every host that is up
    fmt = cast(Format, args.format) if args.format else None  # argparse checked the choice
    fmt = fmt or (format_from_name(args.output) if args.output else None) or "json"
    snapshot = asyncio.run(one_shot(settings))
    data = dumps(snapshot, fmt)
    try:
        if args.output:
            _write_atomically(Path(args.output), data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
    except OSError as exc:
        return _fail(f"cannot write the snapshot: {exc}")
    failed = [h for h in snapshot.hosts if h.state not in (HostStatus.UP, HostStatus.DISABLED)]
    polled = sum(1 for h in snapshot.hosts if h.state is not HostStatus.DISABLED)
    summary = f"fleetd snapshot: {polled - len(failed)} of {polled} hosts answered"
    summary += f", {snapshot.counts.containers} containers"
    print(summary, file=sys.stderr)
    for h in failed:
        print(f"  {h.name} ({h.url}): {h.state.value}: {h.last_error}", file=sys.stderr)
    return 1 if failed else 0


# -- fleetd diff -----------------------------------------------------------------------------------


def _is_id(ref: str) -> bool:
    return ref == "latest" or (ref.isdigit() and int(ref) > 0)


async def _from_database(db_path: Path, refs: list[str]) -> dict[str, Snapshot]:
    from fleetd.store.db import Database
    from fleetd.store.snapshots import SnapshotStore

    found: dict[str, Snapshot] = {}
    async with Database(db_path, readonly=True) as db:
        store = SnapshotStore(db)
        for ref in refs:
            sid = await store.latest_id() if ref == "latest" else int(ref)
            snapshot = await store.get(sid) if sid is not None else None
            if snapshot is None:
                raise LookupError(f"{db_path}: no snapshot {ref}")
            found[ref] = snapshot
    return found


def diff_command(args: argparse.Namespace) -> int:
    from fleetd.snapshot.diff import diff_snapshots
    from fleetd.snapshot.table import format_diff
    from fleetd.store.errors import StoreError

    sides: dict[str, Snapshot] = {}
    ids: list[str] = []
    for ref in (args.old, args.new):
        path = Path(ref)
        if path.is_file():
            try:
                data = path.read_bytes()
                sides[ref] = loads(data, detect_format(ref, data))
            except (OSError, SnapshotFormatError) as exc:
                return _fail(f"{ref}: {exc}")
        elif _is_id(ref):
            ids.append(ref)
        else:
            return _fail(f"{ref}: no such file, and not a snapshot id")
    if ids:
        settings = _load_settings(args.config)
        if settings is None:
            return 2
        try:
            sides.update(asyncio.run(_from_database(settings.snapshots.path, ids)))
        except (StoreError, LookupError) as exc:
            return _fail(str(exc))
    diff = diff_snapshots(sides[args.old], sides[args.new])
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(diff) + b"\n")
    else:
        sys.stdout.write(format_diff(diff))
    sys.stdout.flush()
    return 0 if diff.empty else 1
