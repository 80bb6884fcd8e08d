"""Installs fleet operations and the API's security into an app made by ``create_app``.

Adds, in this order after the error middleware: the audit middleware, then the auth middleware
(so refused calls are audited too); the operation, image, batch, audit and OpenAPI routes; and
the lifecycle: security findings and audit retention run in the background, and on shutdown
in-flight operations get up to ``shutdown_grace`` seconds to finish and be audited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from fleetd.api import actions, batch, images, logs, openapi
from fleetd.api import audit as audit_api
from fleetd.api.auth import AuthGuard, auth_middleware
from fleetd.api.keys import AUDITOR, AUTH, CONFIG, FINDINGS, STATE
from fleetd.ops.audit import Auditor
from fleetd.ops.findings import FindingsWatch

__all__ = ["install"]


async def _operations_ctx(app: web.Application) -> AsyncIterator[None]:
    findings = app[FINDINGS]
    await findings.refresh()  # host objects carry their findings from the first answer on
    findings.apply()
    tasks = [
        asyncio.create_task(findings.run(), name="findings"),
        asyncio.create_task(app[AUDITOR].prune_forever(), name="audit-retention"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _drain(app: web.Application) -> None:
    # on_shutdown runs before aiohttp waits for handlers and before any cleanup context closes the
    # poller, the connections or the database, so operations can still finish and be stored.
    await app[AUDITOR].drain(app[CONFIG].current.shutdown_grace)


def install(app: web.Application, *, auditor: Auditor | None = None) -> None:
    app[AUTH] = AuthGuard()
    app[AUDITOR] = auditor if auditor is not None else Auditor()
    app[FINDINGS] = FindingsWatch(app[STATE])
    app.middlewares.append(audit_api.audit_middleware)
    app.middlewares.append(auth_middleware)
    app.cleanup_ctx.append(_operations_ctx)
    app.on_shutdown.append(_drain)
    for module in (actions, images, batch, audit_api, openapi):
        app.add_routes(module.routes)
    logs.install(app)  # container logs, plain, followed and merged
