"""SIGHUP / POST reload: re-read config and inventory and apply it without a gap."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import structlog
from aiohttp import web

from fleetd.api.keys import CONFIG, POLLER
from fleetd.api.webhooks import WEBHOOKS
from fleetd.config import ConfigError, load_config
from fleetd.config.model import Settings
from fleetd.fleet.poller import ReconcileReport
from fleetd.service.notify import Notifier

__all__ = ["ReloadFailed", "reload_app"]

log = structlog.get_logger("fleetd.reload")


class ReloadFailed(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


async def reload_app(
    app: web.Application, config_path: Path, notifier: Notifier | None = None
) -> ReconcileReport:
    """Apply the config file at ``config_path``. An invalid file changes nothing."""
    holder = app[CONFIG]
    if notifier is not None:
        notifier.reloading()
    cancelled = False
    try:
        try:
            new = await asyncio.to_thread(load_config, config_path)
        except ConfigError as exc:
            holder.last_reload_ok = False
            problems = [str(p) for p in exc.problems]
            log.error("reload rejected; the previous configuration stays in force", problems=problems)
            raise ReloadFailed(problems) from None
        old = holder.current
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
            new = _keep_listen(new, old)
        report = await app[POLLER].reconcile(new.hosts, new.poll)
        holder.current = new
        if (hooks := app.get(WEBHOOKS)) is not None:
            await hooks.reconfigure(new.notify)
        holder.last_reload_ok = True
        holder.last_reload_success = time.time()
        log.info(
            "configuration reloaded",
            added=list(report.added),
            removed=list(report.removed),
            reconnected=list(report.reconnected),
            updated=list(report.updated),
            unchanged=len(report.unchanged),
        )
        return report
    except asyncio.CancelledError:
        cancelled = True  # shutting down: STOPPING=1 follows, never READY=1 after it
        raise
    finally:
        if notifier is not None and not cancelled:
            notifier.ready()


def _keep_listen(new: Settings, old: Settings) -> Settings:
    return dataclasses.replace(
        new, listen_host=old.listen_host, listen_port=old.listen_port, listen_tls=old.listen_tls
    )
