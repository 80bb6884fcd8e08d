"""Typed application keys: the only way handlers reach shared objects (no globals)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from fleetd.config.model import Settings
from fleetd.dockerapi import EngineConnections
from fleetd.fleet.poller import Poller
from fleetd.fleet.state import FleetState

if TYPE_CHECKING:
    from fleetd.api.auth import AuthGuard
    from fleetd.fleet.feed import FleetFeed
    from fleetd.metrics import FleetMetrics
    from fleetd.ops.audit import Auditor
    from fleetd.ops.findings import FindingsWatch
    from fleetd.service.notify import Notifier
    from fleetd.snapshot.service import SnapshotService
    from fleetd.store.db import Database

__all__ = [
    "AUDITOR",
    "AUTH",
    "CONFIG",
    "CONNECTIONS",
    "DATABASE",
    "FEED",
    "FINDINGS",
    "METRICS",
    "POLLER",
    "SNAPSHOTS",
    "STATE",
    "ConfigHolder",
]


class ConfigHolder:
    """The settings in force; replaced as a whole on reload (the app itself is frozen)."""

    def __init__(self, settings: Settings) -> None:
        self.current = settings
        self.last_reload_ok: bool = True
        self.last_reload_success: float | None = time.time()


CONFIG = web.AppKey("config", ConfigHolder)
STATE = web.AppKey("state", FleetState)
POLLER = web.AppKey("poller", Poller)
CONNECTIONS = web.AppKey("connections", EngineConnections)
METRICS: web.AppKey[FleetMetrics] = web.AppKey("metrics")
AUTH: web.AppKey[AuthGuard] = web.AppKey("auth")
AUDITOR: web.AppKey[Auditor] = web.AppKey("auditor")
FINDINGS: web.AppKey[FindingsWatch] = web.AppKey("findings")
DATABASE: web.AppKey[Database] = web.AppKey("database")  # opened at start-up when snapshots.enabled
SNAPSHOTS: web.AppKey[SnapshotService] = web.AppKey("snapshots")
FEED: web.AppKey[FleetFeed] = web.AppKey("feed")  # the fleet event feed (SSE, webhooks)
NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier")  # set by the service runner only
