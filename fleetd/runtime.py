"""The running fleet: one object that builds, starts, reloads and closes every long-lived part.

    async with Fleet(settings) as fleet:          # database, poller, findings, schedules, parts
        app = create_app(fleet)                  # HTTP is an adapter over it (fleetd/api)
        ...
        report = await fleet.reload()             # SIGHUP and POST /api/v1/reload

    snapshot = await Fleet.one_shot(settings)     # fleetd snapshot: poll once, no database

:class:`Fleet` knows no HTTP. It owns: the settings in force (:class:`LiveConfig`), the state and its
change signal, the Engine connection pools, the poller, the security findings watch, fleetd's database
(the audit log and the snapshots live in it, whether or not snapshots are enabled), the auditor, the
snapshot service and the metrics. Features that need a long-lived part of their own register it with
:meth:`Fleet.add_part` before start: it is started after the core and closed before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import structlog
from prometheus_client import CollectorRegistry

from fleetd.config import ConfigError, Settings, load_config
from fleetd.config.live import LiveConfig, ReloadFailed, keep_listen
from fleetd.dockerapi import EngineConnections
from fleetd.fleet.clients import keepalive_for
from fleetd.fleet.feed import FleetFeed
from fleetd.fleet.findings import FindingsWatch
from fleetd.fleet.live import LiveFleet
from fleetd.fleet.poller import Poller, ReconcileReport
from fleetd.fleet.state import FleetState
from fleetd.metrics import FleetMetrics
from fleetd.ops.audit import Auditor
from fleetd.ops.snapshots import SnapshotService
from fleetd.snapshot.model import Snapshot, Trigger, build_snapshot, capture_fleet
from fleetd.store.audit import SqlRunner
from fleetd.store.db import Database
from fleetd.store.errors import StoreError
from fleetd.store.snapshots import SnapshotStore
from fleetd.util.ratelimit import FailureGate
from fleetd.util.version import fleetd_version
from fleetd.webhooks import WebhookService

__all__ = ["Fleet", "FleetPart", "Reconfigurable", "ReloadFailed", "ReloadListener"]

log = structlog.get_logger("fleetd")

PART_SLACK = 5.0  # seconds a part may take to close beyond the shutdown grace
RECONFIGURE_LIMIT = 30.0  # seconds a part may take to apply a reload


class FleetPart(Protocol):
    """A long-lived part a feature adds (an event watcher, a second listener, a notifier...)."""

    async def start(self) -> None: ...

    async def aclose(self) -> None:
        """Stop and release everything; safe to call twice, and without a start."""
        ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A part that wants the new settings after every accepted reload."""

    async def reconfigure(self, settings: Settings) -> None: ...


class ReloadListener(Protocol):
    """Told around every reload (systemd's RELOADING=1 / READY=1)."""

    def reloading(self) -> None: ...

    def ready(self) -> None: ...


class Fleet:
    def __init__(
        self,
        settings: Settings,
        *,
        state: FleetState | None = None,
        registry: CollectorRegistry | None = None,
        audit_sql: SqlRunner | None = None,
        listener: ReloadListener | None = None,
    ) -> None:
        """``audit_sql``: where audit rows go instead of fleetd's database (tests)."""
        self.config = LiveConfig(settings)
        self.state = state if state is not None else FleetState()
        self.metrics = FleetMetrics(self.state, self.config, registry)
        self.connections = EngineConnections(keepalive=keepalive_for(settings))
        self.poller = Poller(self.state, settings.poll, self.connections, observer=self.metrics)
        self.findings = FindingsWatch(self.state)
        self.database = Database(settings.snapshots.path, created_by=f"fleetd {fleetd_version()}")
        self.auditor = Auditor(audit_sql if audit_sql is not None else self.database)
        # Wrong tokens, counted per address for the API and the Docker endpoint together: guessing on one
        # listener blocks it on the other (a token proven from the address stays welcome on both).
        self.auth_failures = FailureGate()
        self.snapshots = SnapshotService(
            self.state, SnapshotStore(self.database), enabled=settings.snapshots.enabled
        )
        self.feed = FleetFeed(size=settings.events.buffer, max_age=settings.events.max_age)
        # Webhooks read the fleet events the SSE stream sends, from their own bounded subscription,
        # opened only while a receiver is configured (without one the feed stays quiet).
        self.webhooks = WebhookService(
            settings.notify, lambda: self.feed.subscribe(maxsize=10_000), registry=self.metrics.registry
        )
        self.listener = listener
        self._parts: list[FleetPart] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self._started = False
        self._closed = False
        # Engine events between polls, and the feed of fleet events (SSE, webhooks): docs/live.md.
        self.live = LiveFleet(self.state, self.poller, self.feed, settings, registry=self.metrics.registry)
        self.add_part(self.live)

    @property
    def settings(self) -> Settings:
        """The settings in force (replaced as a whole on reload)."""
        return self.config.current

    # -- parts -------------------------------------------------------------------------------

    def add_part(self, part: FleetPart) -> None:
        """Own ``part``: started after the core (in the order added), closed before it (in reverse)."""
        if self._started:
            raise RuntimeError("parts are added before the fleet starts")
        self._parts.append(part)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a background task of the fleet: cancelled and awaited on close."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", task=task.get_name(), error=repr(exc))

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database (a refused file raises StoreError), start polling and the background work."""
        if self._started:
            raise RuntimeError("the fleet was already started")
        self._started = True
        try:
            try:
                await self.database.open()
            except StoreError as exc:
                log.error("fleetd cannot start: the snapshot database is unusable", error=str(exc))
                raise
            settings = self.settings
            await self.poller.start(settings.hosts)
            await self.findings.update()  # host objects carry their findings from the first answer on
            self.spawn(self.findings.run(), "findings")
            self.spawn(self.auditor.prune_forever(), "audit-retention")
            if self.snapshots.enabled:
                self.snapshots.start_schedule(
                    settings=lambda: self.config.current.snapshots,
                    last_taken_at=await self.snapshots.store.latest_taken_at(),
                    config_changed=self.config.wait_changed,
                )
            await self.webhooks.start()
            for part in self._parts:
                await part.start()
        except BaseException:
            await self.aclose()
            raise

    async def drain(self) -> int:
        """Let operations in flight finish (and be audited) within the grace period."""
        return await self.auditor.drain(self.settings.shutdown_grace)

    async def aclose(self, grace: float | None = None) -> None:
        """Stop everything, newest first; safe to call twice. ``grace``: how long operations and the
        last snapshot may still take (default ``shutdown_grace``; the runner passes what is left of it)."""
        if self._closed:
            return
        self._closed = True
        grace = self.settings.shutdown_grace if grace is None else max(0.0, grace)
        for part in reversed(self._parts):
            try:
                async with asyncio.timeout(grace + PART_SLACK):  # one part cannot hold the shutdown
                    await part.aclose()
            except TimeoutError:
                log.error("closing a part took too long; went on without it", part=type(part).__name__)
            except Exception:
                log.exception("closing a part failed", part=type(part).__name__)
        await self.webhooks.aclose()
        await self.auditor.drain(grace)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.snapshots.aclose(grace)
        finally:
            await self.poller.aclose()
            await self.connections.aclose()
            await self.database.aclose()

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- reload ------------------------------------------------------------------------------

    async def reload(self, path: Path | None = None) -> ReconcileReport:
        """Apply the config file (default: the one in force). An invalid file changes nothing and
        raises :class:`ReloadFailed`. SIGHUP and ``POST /api/v1/reload`` both come here."""
        async with self._reload_lock:
            if self.listener is not None:
                self.listener.reloading()
            cancelled = False
            try:
                return await self._reload(path or self.settings.path)
            except asyncio.CancelledError:
                cancelled = True  # shutting down: STOPPING=1 follows, never READY=1 after it
                raise
            finally:
                if self.listener is not None and not cancelled:
                    self.listener.ready()

    async def _reload(self, path: Path) -> ReconcileReport:
        try:
            new = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            self.config.reject()
            problems = [str(p) for p in exc.problems]
            log.error("reload rejected; the previous configuration stays in force", problems=problems)
            raise ReloadFailed(problems) from None
        old = self.settings
        if (new.listen_host, new.listen_port, new.listen_tls) != (
            old.listen_host,
            old.listen_port,
            old.listen_tls,
        ):
            log.warning(
                "the listen address cannot change on reload; restart fleetd to apply it",
                configured=f"{new.listen_host}:{new.listen_port}",
                in_use=f"{old.listen_host}:{old.listen_port}",
            )
            new = keep_listen(new, old)
        # All or nothing: what can fail (every TLS context) is built before any host is touched.
        if problems := await self.poller.prepare(new.hosts):
            self.config.reject()
            log.error("reload rejected; the previous configuration stays in force", problems=problems)
            raise ReloadFailed(problems)
        report = await self.poller.reconcile(new.hosts, new.poll)
        self.config.accept(new)
        await self.webhooks.reconfigure(new.notify)
        for part in self._parts:
            if isinstance(part, Reconfigurable):
                try:
                    async with asyncio.timeout(RECONFIGURE_LIMIT):
                        await part.reconfigure(new)
                except TimeoutError:
                    log.error("a part did not apply the new configuration in time", part=type(part).__name__)
                except Exception:
                    log.exception("a part failed to apply the new configuration", part=type(part).__name__)
        log.info(
            "configuration reloaded",
            added=list(report.added),
            removed=list(report.removed),
            reconnected=list(report.reconnected),
            updated=list(report.updated),
            unchanged=len(report.unchanged),
        )
        return report

    # -- one shot ----------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Register the inventory and poll every enabled host once; no database, no background work."""
        if self._started:
            raise RuntimeError("poll_once is for a fleet that was not started")
        settings = self.settings
        await self.poller.reconcile(settings.hosts, settings.poll)
        await self.poller.poll_once()

    @classmethod
    async def one_shot(cls, settings: Settings) -> Snapshot:
        """Poll every enabled host of ``settings`` once and build the snapshot (``fleetd snapshot``)."""
        fleet = cls(settings)
        try:
            await fleet.poll_once()
            capture = capture_fleet(fleet.state, Trigger.ONE_SHOT)
        finally:
            await fleet.aclose()
        return build_snapshot(capture)
