"""Wires the webhook service (fleetd/webhooks/) into the app: started with it, stopped with it,
reconfigured on reload (:func:`fleetd.service.reload.reload_app` calls ``reconfigure``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from fleetd.api.keys import CONFIG, METRICS, STATE
from fleetd.webhooks import WebhookService
from fleetd.webhooks.derive import StateDiffSource

__all__ = ["WEBHOOKS", "install"]

WEBHOOKS = web.AppKey("webhooks", WebhookService)


async def _webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[WEBHOOKS]
    await service.start()
    try:
        yield
    finally:
        await service.aclose()


def install(app: web.Application) -> None:
    # The source is the state's own changes, derived, until the fleet feed is fed by the change
    # signal; then it becomes app[FEED].subscribe(maxsize=...), the same events the SSE stream sends.
    source = StateDiffSource(app[STATE])
    app[WEBHOOKS] = WebhookService(app[CONFIG].current.notify, source, registry=app[METRICS].registry)
    app.cleanup_ctx.append(_webhooks_ctx)
