"""The webhook service: reads fleet events from one source, hands each notice to every receiver that
asked for it, and owns the HTTP session, the receivers' tasks and the counters.

The source is subscribed only while at least one receiver is configured: without one the fleet feed
stays quiet (no fleet event is made for nobody; see fleet/feed.py).

The dispatcher never waits on HTTP: :meth:`WebhookSender.offer` is synchronous and bounded, so neither a
slow receiver nor many of them can hold up the source (whose own queue would otherwise overflow).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, Counter

from fleetd.config.notify import WebhookSettings
from fleetd.fleet.feed import FleetEvent, Lagged
from fleetd.webhooks.notices import matches, notices_for
from fleetd.webhooks.sender import SenderCounters, WebhookSender

__all__ = ["EventSource", "WebhookService"]

log = structlog.get_logger("fleetd.webhooks")


class EventSource(Protocol):
    """What the service reads: the fleet feed's subscription has this shape."""

    def __aiter__(self) -> AsyncIterator[FleetEvent | Lagged]: ...

    def close(self) -> None: ...


def _counters(registry: CollectorRegistry | None) -> SenderCounters:
    def counter(name: str, text: str) -> Counter:
        return Counter(name, text, ["webhook"], registry=registry)

    return SenderCounters(
        sent=counter("fleetd_webhooks_sent", "Webhook notices delivered (a 2xx answer)"),
        failed=counter("fleetd_webhooks_failed", "Webhook notices given up after every retry or refused"),
        dropped=counter("fleetd_webhooks_dropped", "Webhook notices dropped from a full queue (or on stop)"),
    )


class WebhookService:
    def __init__(
        self,
        webhooks: tuple[WebhookSettings, ...],
        subscribe: Callable[[], EventSource],
        *,
        registry: CollectorRegistry | None = None,
        backoff: float = 0.5,
    ) -> None:
        """``subscribe``: opens the source (called when the first receiver is configured)."""
        self._webhooks = webhooks
        self._subscribe = subscribe
        self._source: EventSource | None = None
        self._counters = _counters(registry)
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._senders: dict[str, WebhookSender] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def senders(self) -> dict[str, WebhookSender]:
        return dict(self._senders)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),  # each attempt has its own bound
            trust_env=False,
            skip_auto_headers=("User-Agent",),
        )
        await self.reconfigure(self._webhooks)

    async def reconfigure(self, webhooks: tuple[WebhookSettings, ...]) -> None:
        """Apply a reloaded ``notify:``: unchanged receivers keep their queue, changed ones start afresh."""
        assert self._session is not None, "start() first"
        self._webhooks = webhooks
        wanted = {w.name: w for w in webhooks}
        for name, sender in list(self._senders.items()):
            if wanted.get(name) != sender.settings:
                del self._senders[name]
                await sender.aclose()
        for name, settings in wanted.items():
            if name not in self._senders:
                sender = WebhookSender(settings, self._session, self._counters, backoff=self._backoff)
                sender.start()
                self._senders[name] = sender
        if self._senders and self._source is None:
            self._source = self._subscribe()
            self._task = asyncio.create_task(self._dispatch(self._source), name="webhooks")
        elif not self._senders and self._source is not None:
            await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            source.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _dispatch(self, source: EventSource) -> None:
        try:
            async for item in source:
                if isinstance(item, Lagged):
                    log.warning(
                        "webhooks fell behind the fleet events; some were not notified", missed=item.missed
                    )
                    continue
                senders = self._senders
                if not senders:
                    continue  # no receiver configured: nothing to derive (40 events per host at start-up)
                for notice in notices_for(item):
                    for sender in senders.values():
                        if matches(sender.settings, notice):
                            sender.offer(notice)
        except Exception:  # a bug here must be seen, and must not take anything else down
            log.exception("webhook dispatch stopped; no more notices will be sent")

    async def aclose(self) -> None:
        """Stop reading, stop every receiver, close the session. Safe twice."""
        await self._unsubscribe()
        senders, self._senders = list(self._senders.values()), {}
        for sender in senders:
            await sender.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
