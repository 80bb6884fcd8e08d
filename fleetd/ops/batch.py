"""Running one action on many containers across hosts: bounded, isolated per target.

At most ``concurrency`` Engine calls are in flight. A failure is that target's outcome and never
stops the others. Once a host proves unreachable (refused, timed out), its remaining targets get
that same error at once instead of each waiting out a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from fleetd.dockerapi import DockerClient, DockerError, EngineTimeout, EngineUnreachable
from fleetd.ops.containers import Action, ActionOptions, perform
from fleetd.ops.selector import Target
from fleetd.ops.targets import HostUnavailable

__all__ = ["BATCH_CONCURRENCY", "TargetResult", "run_batch"]

BATCH_CONCURRENCY = 20


@dataclass(frozen=True, slots=True)
class TargetResult:
    target: Target
    changed: bool | None = None
    error: DockerError | HostUnavailable | None = None
    attempted: bool = True  # False: not sent, the host was already known to be unreachable

    @property
    def ok(self) -> bool:
        return self.error is None


async def run_batch(
    targets: list[Target],
    action: Action,
    options: ActionOptions,
    client_for: Callable[[str], DockerClient],
    *,
    concurrency: int = BATCH_CONCURRENCY,
) -> list[TargetResult]:
    """One result per target, in the targets' order. ``client_for`` may raise HostUnavailable.

    ``concurrency`` workers take targets in turn (no task per target, however many there are)."""
    unreachable: dict[str, DockerError] = {}
    results: list[TargetResult | None] = [None] * len(targets)
    queue = iter(enumerate(targets))

    async def one(target: Target) -> TargetResult:
        known = unreachable.get(target.host)
        if known is not None:
            return TargetResult(target, error=known, attempted=False)
        try:
            client = client_for(target.host)
        except HostUnavailable as exc:
            return TargetResult(target, error=exc, attempted=False)
        try:
            changed = await perform(client, action, target.id, options)
        except (EngineUnreachable, EngineTimeout) as exc:
            unreachable.setdefault(target.host, exc)
            return TargetResult(target, error=exc)
        except DockerError as exc:
            return TargetResult(target, error=exc)
        return TargetResult(target, changed=changed)

    async def worker() -> None:
        for index, target in queue:
            results[index] = await one(target)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(targets))))))
    return [r for r in results if r is not None]
