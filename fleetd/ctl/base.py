"""What every client command shares: running it, its endpoint, container references, times."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fleetd.ctl.client import FleetClient
from fleetd.ctl.connect import Endpoint, resolve_endpoint
from fleetd.ctl.errors import CtlError
from fleetd.util.timefmt import parse_rfc3339

__all__ = ["Ref", "ago", "endpoint_of", "parse_ref", "run_command", "since_text"]

Command = Callable[[argparse.Namespace, FleetClient], Awaitable[int]]


def endpoint_of(args: argparse.Namespace) -> Endpoint:
    return resolve_endpoint(
        url=getattr(args, "url", None),
        config=getattr(args, "ctl_config", None),
        token_file=getattr(args, "token_file", None),
        cacert=getattr(args, "cacert", None),
        insecure=bool(getattr(args, "insecure", False)),
    )


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run ``command`` with a client for the endpoint ``args`` name; errors become one line on stderr."""

    async def main() -> int:
        async with FleetClient(endpoint_of(args)) as api:
            return await command(args, api)

    try:
        return asyncio.run(main())
    except CtlError as exc:
        print(f"fleetd: {exc.message}", file=sys.stderr)
        if exc.exit_code == 1:  # trouble; `snapshot diff` says 2 for it, like diff(1)
            return int(getattr(args, "trouble_exit", 1))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `fleetd ps | head`: the reader left, nothing to say
        return 0


@dataclass(frozen=True, slots=True)
class Ref:
    host: str
    container: str

    def __str__(self) -> str:
        return f"{self.host}/{self.container}"


def parse_ref(text: str) -> Ref:
    host, sep, container = text.partition("/")
    if not sep or not host or not container or "/" in container:
        raise CtlError(f"{text!r}: name a container as HOST/CONTAINER (a name, id or id prefix)", exit_code=2)
    return Ref(host, container)


def ago(rfc: str | None, now: float | None = None) -> str:
    """``"2026-12-03T10:00:00Z"`` → ``"3 minutes ago"``, as docker words it; "" for None."""
    if not rfc:
        return ""
    try:
        seconds = max(0.0, (time.time() if now is None else now) - parse_rfc3339(rfc))
    except ValueError:
        return rfc
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    for unit, size, below in (("second", 1, 60), ("minute", 60, 3600), ("hour", 3600, 2 * 86400)):
        if seconds < below:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = int(seconds // 86400)
    return f"{n} days"


def since_text(rfc: str | None, now: float | None = None) -> str:
    """``"for 3 minutes"`` for a state that began at ``rfc``; "" when unknown."""
    if not rfc:
        return ""
    try:
        seconds = max(0.0, (time.time() if now is None else now) - parse_rfc3339(rfc))
    except ValueError:
        return ""
    return _span(seconds)
