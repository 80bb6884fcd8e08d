"""``container_logs:``: who may read container logs (they often carry secrets) and the bounds of streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fleetd.config.fields import Section

__all__ = ["CONTAINER_LOGS_KEYS", "ContainerLogSettings", "read_container_logs"]

CONTAINER_LOGS_KEYS = ("role", "max_streams", "max_containers", "merge_window")
LogRole = Literal["viewer", "operator", "admin"]
_ROLES: dict[str, LogRole] = {"viewer": "viewer", "operator": "operator", "admin": "admin"}


@dataclass(frozen=True, slots=True)
class ContainerLogSettings:
    role: LogRole = "operator"  # the lowest role that may read logs (plain and followed)
    max_streams: int = 100  # log streams open at once (followed or merged), past it: 503
    max_containers: int = 100  # containers one merged stream follows at most
    merge_window: float = 0.5  # seconds a line may wait for earlier lines from other containers


def read_container_logs(top: Section) -> ContainerLogSettings:
    default = ContainerLogSettings()
    sec = top.section("container_logs", CONTAINER_LOGS_KEYS)
    if sec is None:
        return default
    window = sec.duration("merge_window", allow_zero=True)
    if window is not None and window > 10.0:
        sec.problem("merge_window", f"must be at most 10s, got {window:g}s (lines wait that long)")
        window = None
    return ContainerLogSettings(
        role=sec.choice("role", _ROLES) or default.role,
        max_streams=sec.integer("max_streams", minimum=1, maximum=10_000) or default.max_streams,
        max_containers=sec.integer("max_containers", minimum=1, maximum=1_000) or default.max_containers,
        merge_window=default.merge_window if window is None else window,
    )
