"""Command-line entry points: ``fleetd run | check-config | snapshot | diff``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fleetd.util.lean_structlog import import_structlog_without_rich

import_structlog_without_rich()  # before anything imports structlog: see the module

from fleetd.cli.snapshots import add_commands as add_snapshot_commands  # noqa: E402
from fleetd.ctl import add_commands as add_ctl_commands  # noqa: E402

__all__ = ["main"]


def _check_config(args: argparse.Namespace) -> int:
    from fleetd.config import ConfigError, load_config

    try:
        settings = load_config(Path(args.config))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    from fleetd.config.exposure import exposure_problem

    if exposed := exposure_problem(settings):
        print(exposed, file=sys.stderr)
        return 2
    from fleetd.store.schema import file_problem

    if unusable := file_problem(settings.snapshots.path):
        print(unusable, file=sys.stderr)  # the database `fleetd run` would refuse
        return 2
    enabled = sum(1 for h in settings.hosts if h.enabled)
    print(f"{settings.path}: ok ({len(settings.hosts)} hosts, {enabled} enabled)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from fleetd.service.runner import run_service

    return run_service(Path(args.config))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the poller and the REST API")
    p.add_argument("--config", "-c", default="/etc/fleetd/fleetd.yaml")
    p.set_defaults(func=_run)

    p = sub.add_parser("check-config", help="validate a config file; exit 2 on problems")
    p.add_argument("--config", "-c", default="/etc/fleetd/fleetd.yaml")
    p.set_defaults(func=_check_config)

    add_snapshot_commands(sub)  # snapshot, diff
    add_ctl_commands(sub, build_parser)  # ps, hosts, logs, stop, ..., snapshot take|list|show|diff
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
