"""The client commands' argument grammar, registered on the ``fleetd`` entry point's subparsers.

Every command here talks to a running fleetd over its HTTP API (never to the daemons) and takes the
same connection options. ``fleetd snapshot`` keeps its offline form (``--config F [-o FILE]``) and gains
the sub-verbs take, list, show and diff, which ask a running fleetd instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["CONTAINER_STATES", "add_commands", "connection_options"]

# Copies of fleet.match.CONTAINER_STATES and fleet.records.HostStatus, kept here so the command line starts
# without importing the server's modules; tests/unit/test_ctl_output.py checks that they agree.
CONTAINER_STATES: Final = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HOST_STATES: Final = ("unknown", "up", "down", "error", "disabled")


def connection_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection (a running fleetd)")
    g.add_argument(
        "--url", metavar="URL", help="fleetd's address (default: $FLEETD_URL, else the local config's listen)"
    )
    g.add_argument(
        "--token-file", metavar="FILE", help="a file holding the API token (default: $FLEETD_TOKEN)"
    )
    g.add_argument(
        "--cacert", metavar="FILE", help="CA certificate for an HTTPS fleetd (default: $FLEETD_CACERT)"
    )
    g.add_argument("--insecure", action="store_true", help="do not verify fleetd's TLS certificate")
    g.add_argument("--config", "-c", dest="ctl_config", metavar="FILE",
                   help="read fleetd's listen address from this config (default: $FLEETD_CONFIG, "
                   "/etc/fleetd/fleetd.yaml, ./config/fleetd.yaml)")  # fmt: skip
    return p


def _runner(module: str, name: str, *, watch: str | None = None) -> Callable[[argparse.Namespace], int]:
    """A handler that imports its command only when run (``fleetd run`` never loads rich).
    ``watch``: the command of fleetd.ctl.watch that ``--watch`` runs instead (watch draws with the
    command's tables, so the command module never imports watch: no cycle)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        from fleetd.ctl.base import run_command

        if watch is not None and getattr(args, "watch", False):
            module_name, command_name = "watch", watch
        else:
            module_name, command_name = module, name
        command = getattr(importlib.import_module(f"fleetd.ctl.{module_name}"), command_name)
        return run_command(command, args)

    return run


def _selector(p: argparse.ArgumentParser, *, host_label: bool = True) -> None:
    p.add_argument("--host", action="append", metavar="H", help="only on this host (repeatable)")
    if host_label:
        p.add_argument("--host-label", action="append", default=[], metavar="K=V",
                       help="only on hosts with this label (repeatable: all must match)")  # fmt: skip
    p.add_argument(
        "--label", "-l", action="append", metavar="K[=V]", help="containers with this label (repeatable)"
    )


def _ps(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ps", parents=[common], help="list the fleet's containers (running ones unless -a)",
                       description="List containers across the fleet, like docker ps with a HOST column.")  # fmt: skip
    p.add_argument("-a", "--all", action="store_true", help="all containers, not only running ones")
    _selector(p)
    p.add_argument("--state", choices=CONTAINER_STATES, help="containers in this state (implies -a)")
    p.add_argument("--image", metavar="I", help="containers of this image (tag, repository or id)")
    p.add_argument("--name", metavar="N", help="containers named N, or matching N as a glob (web-*; *web* for part of a name)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-q", "--quiet", action="store_true", help="only container ids")
    out.add_argument("--json", action="store_true", help="the API's container objects, as a JSON array")
    out.add_argument(
        "--format",
        metavar="TEMPLATE",
        help="docker-style Go template: '{{.Host}} {{.ID}}', 'table ...', json",
    )
    out.add_argument("-w", "--watch", action="store_true", help="redraw in place as the fleet changes")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.set_defaults(func=_runner("ps", "ps_command", watch="watch_containers"))


def _hosts(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("hosts", parents=[common], help="the inventory with each host's state")
    p.add_argument("--state", choices=HOST_STATES, help="hosts in this state")
    p.add_argument(
        "--label", "-l", action="append", metavar="K[=V]", help="hosts with this label (repeatable)"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("-q", "--quiet", action="store_true", help="only host names")
    out.add_argument("--json", action="store_true", help="the API's host objects, as a JSON array")
    out.add_argument("-w", "--watch", action="store_true", help="redraw in place as the fleet changes")
    p.set_defaults(func=_runner("hosts", "hosts_command", watch="watch_hosts"))

    p = sub.add_parser("host", parents=[common], help="one host: engine facts, findings, last error")
    p.add_argument("name", metavar="HOST")
    p.add_argument("--json", action="store_true", help="the API's host object")
    p.set_defaults(func=_runner("hosts", "host_command"))


def _logs(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("logs", parents=[common], help="a container's log, or many merged (-f follows)",
                       description="fleetd logs [-f] HOST/CONTAINER, or fleetd logs [-f] --label app=web "
                       "(merged, each line prefixed by host/container).")  # fmt: skip
    p.add_argument("target", nargs="?", metavar="HOST/CONTAINER")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument(
        "-n", "--tail", metavar="N", help="lines from the end (a number or 'all'; fleetd's default: 1000)"
    )
    p.add_argument("--since", metavar="WHEN", help="Unix seconds, RFC 3339 or a duration back from now (10m)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")
    p.add_argument(
        "--prefix", action="store_true", help="prefix lines with host/container for one container too"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line, as fleetd sends them")
    _selector(p, host_label=False)
    p.set_defaults(func=_runner("logs", "logs_command"))


def _images_events(sub: Sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("images", parents=[common], help="every image of the fleet once, with its hosts")
    p.add_argument("reference", nargs="?", help="only this image (tag, repository, id or digest)")
    p.add_argument("--host", action="append", metavar="H", help="only on this host (repeatable)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    out.add_argument("--json", action="store_true", help="the API's image objects, as a JSON array")
    p.add_argument("--no-trunc", action="store_true", help="full image ids")
    p.set_defaults(func=_runner("images", "images_command"))

    p = sub.add_parser("events", parents=[common], help="follow the fleet's event stream")
    p.add_argument("--host", action="append", metavar="H", help="only this host's events (repeatable)")
    p.add_argument("--type", action="append", metavar="T",
                   help="container, host, or an exact type such as container.changed (repeatable)")  # fmt: skip
    p.add_argument("--label", "-l", action="append", metavar="K[=V]", help="containers with this label")
    p.add_argument("--since", metavar="EVENT_ID", help="replay the events after this event id first")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.set_defaults(func=_runner("events", "events_command"))


def _actions(sub: Sub, common: argparse.ArgumentParser) -> None:
    helps = {"stop": "stop containers", "start": "start containers", "restart": "restart containers",
             "rm": "remove containers"}  # fmt: skip
    for verb, text in helps.items():
        p = sub.add_parser(verb, parents=[common], help=f"{text}: HOST/CONTAINER ... or a selector",
                           description=f"{text.capitalize()} by name (HOST/CONTAINER ...) or with a selector "
                           "across the fleet. The targets are shown and confirmed first unless --yes.")  # fmt: skip
        p.add_argument("targets", nargs="*", metavar="HOST/CONTAINER")
        _selector(p)
        p.add_argument("--name", metavar="GLOB", help="container names matching exactly or as a glob (web-*)")
        p.add_argument("--state", choices=CONTAINER_STATES, help="containers in this state")
        p.add_argument("-y", "--yes", action="store_true", help="act without asking")
        p.add_argument("--dry-run", action="store_true", help="only show the targets")
        p.add_argument("--json", action="store_true", help="the results as JSON")
        if verb in ("stop", "restart"):
            p.add_argument("-t", "--time", type=int, metavar="SECONDS", help="grace period before killing")
        if verb == "rm":
            p.add_argument("-f", "--force", action="store_true", help="also remove running containers")
        p.set_defaults(func=_runner("actions", "action_command"), verb=verb)


def _snapshot_verbs(sub: Sub, common: argparse.ArgumentParser) -> None:
    snapshot = sub.choices.get("snapshot")
    if snapshot is None:  # the offline command is missing: give the API verbs a parser of their own
        snapshot = sub.add_parser("snapshot", help="snapshots of a running fleetd")
    verbs = snapshot.add_subparsers(dest="snapshot_verb", metavar="{take,list,show,diff}",
                                    title="over the API of a running fleetd (without a verb: poll once offline)")  # fmt: skip
    p = verbs.add_parser("take", parents=[common], help="take a snapshot now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_runner("snapshots", "snapshot_take"))
    p = verbs.add_parser("list", parents=[common], help="stored snapshots, newest first")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.add_argument("--since", metavar="TIME", help="taken at or after (RFC 3339)")
    p.add_argument("--until", metavar="TIME", help="taken before (RFC 3339)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-q", "--quiet", action="store_true", help="only ids")
    out.add_argument("--json", action="store_true")
    p.set_defaults(func=_runner("snapshots", "snapshot_list"))
    p = verbs.add_parser("show", parents=[common], help="one snapshot: a summary, or its JSON/YAML/CSV")
    p.add_argument("id", metavar="ID|latest")
    p.add_argument("--format", choices=("json", "yaml", "csv"), help="the snapshot itself in this format")
    p.add_argument("--output", "-o", metavar="FILE", help="with --format: write it here")
    p.add_argument("--json", action="store_true", help="the snapshot as JSON (same as --format json)")
    p.set_defaults(func=_runner("snapshots", "snapshot_show"))
    p = verbs.add_parser("diff", parents=[common], help="what changed between two stored snapshots",
                         description="snapshot diff NEW (against the one before it) or OLD NEW; ids or 'latest'. "
                         "Exit 0: no changes, 1: changes, 2: trouble.")  # fmt: skip
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--json", action="store_true", help="the API's diff JSON")
    p.set_defaults(func=_runner("snapshots", "snapshot_diff"), trouble_exit=2)


def _completion(sub: Sub, parser_of: Callable[[], Any]) -> None:
    p = sub.add_parser("completion", help="print a bash or zsh completion script",
                       description="eval \"$(fleetd completion bash)\" in ~/.bashrc; "
                       "fleetd completion zsh > \"${fpath[1]}/_fleetd\" for zsh.")  # fmt: skip
    p.add_argument("shell", choices=("bash", "zsh"))

    def run(args: argparse.Namespace) -> int:
        from fleetd.ctl.completion import script

        print(script(args.shell, parser_of()), end="")
        return 0

    p.set_defaults(func=run)


def add_commands(sub: Sub, parser_of: Callable[[], Any]) -> None:
    """Register the client commands; ``parser_of`` builds the whole parser (for completion scripts)."""
    common = connection_options()
    _ps(sub, common)
    _hosts(sub, common)
    _logs(sub, common)
    _images_events(sub, common)
    _actions(sub, common)
    _snapshot_verbs(sub, common)
    _completion(sub, parser_of)
