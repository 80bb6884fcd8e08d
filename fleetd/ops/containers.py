"""Container actions, the same for one container (per-host endpoints) and for many (batches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fleetd.dockerapi import DockerClient

__all__ = ["Action", "ActionOptions", "perform"]

Action = Literal["start", "stop", "restart", "kill", "remove"]


@dataclass(frozen=True, slots=True)
class ActionOptions:
    t: int | None = None  # stop/restart: seconds before SIGKILL
    signal: str | None = None  # kill
    force: bool = False  # remove: a running container too
    volumes: bool = False  # remove: its anonymous volumes too


async def perform(client: DockerClient, action: Action, ref: str, options: ActionOptions) -> bool:
    """Do ``action`` on container ``ref``; False when it was already in that state (HTTP 304)."""
    containers = client.containers
    if action == "start":
        return await containers.start(ref)
    if action == "stop":
        return await containers.stop(ref, t=options.t)
    if action == "restart":
        return await containers.restart(ref, t=options.t)
    if action == "kill":
        return await containers.kill(ref, signal=options.signal)
    await containers.remove(ref, force=options.force, v=options.volumes)
    return True
