"""One webhook receiver: a bounded queue of notices and the one task that POSTs them, in order.

:meth:`WebhookSender.offer` never waits: a full queue drops its oldest notice (counted, and logged
once per burst), so a receiver that hangs or is down costs bounded memory and delays nobody else —
every receiver has its own queue and task. Each attempt is bounded by the receiver's ``timeout``;
connection errors, timeouts, 408, 429 and 5xx are retried ``retries`` times with jittered exponential
backoff; any other answer outside 2xx fails at once. Every delivery ends in one log line.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import deque
from dataclasses import dataclass

import aiohttp
import msgspec
import structlog
from prometheus_client import Counter

from fleetd.config.notify import WebhookSettings
from fleetd.webhooks.notices import Notice

__all__ = ["SenderCounters", "WebhookSender"]

log = structlog.get_logger("fleetd.webhooks")

MAX_BACKOFF = 30.0
_RETRYABLE = frozenset({408, 429})
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class SenderCounters:
    sent: Counter
    failed: Counter
    dropped: Counter


class WebhookSender:
    def __init__(
        self,
        settings: WebhookSettings,
        session: aiohttp.ClientSession,
        counters: SenderCounters,
        *,
        backoff: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._session = session
        self._sent = counters.sent.labels(settings.name)
        self._failed = counters.failed.labels(settings.name)
        self._dropped = counters.dropped.labels(settings.name)
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._queue: deque[tuple[str, Notice]] = deque()
        self._wake = asyncio.Event()
        self._dropping = 0  # drops in the current burst (logged once when it starts)
        self.task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def offer(self, notice: Notice) -> None:
        if len(self._queue) >= self.settings.queue:
            _, lost = self._queue.popleft()
            self._dropped.inc()
            if self._dropping == 0:
                log.warning(
                    "webhook queue full; dropping the oldest notices",
                    webhook=self.settings.name,
                    queue=self.settings.queue,
                    kind=lost.kind,
                    host=lost.host,
                )
            self._dropping += 1
        elif self._dropping and len(self._queue) < self.settings.queue // 2:
            log.info("webhook queue draining again", webhook=self.settings.name, dropped=self._dropping)
            self._dropping = 0
        self._queue.append((secrets.token_hex(8), notice))
        self._wake.set()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"webhook:{self.settings.name}")

    async def aclose(self) -> None:
        """Stop delivering (what is queued is dropped and counted); safe twice."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        if self._queue:
            self._dropped.inc(len(self._queue))
            self._queue.clear()

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            delivery, notice = self._queue.popleft()
            await self.deliver(delivery, notice)

    def _delay(self, attempt: int) -> float:
        delay: float = min(MAX_BACKOFF, self._backoff * 2**attempt) * self._rng.uniform(0.8, 1.2)
        return delay

    async def deliver(self, delivery: str, notice: Notice) -> bool:
        settings = self.settings
        body = _encode(notice)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "fleetd",
            "X-Fleetd-Event": notice.kind,
            "X-Fleetd-Delivery": delivery,  # the same on every retry: receivers can deduplicate
        }
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token}"
        started = time.monotonic()
        error = ""
        attempts = 0
        for attempt in range(settings.retries + 1):
            attempts = attempt + 1
            status: int | None = None
            try:
                async with asyncio.timeout(settings.timeout):
                    async with self._session.post(
                        settings.url, data=body, headers=headers, allow_redirects=False
                    ) as resp:
                        status = resp.status
                        await resp.content.read(4096)  # a little of the answer; the rest is dropped
            except TimeoutError:
                error = f"no answer within {settings.timeout:g}s"
            except (aiohttp.ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if status is not None:
                if 200 <= status < 300:
                    self._sent.inc()
                    log.info(
                        "webhook sent",
                        webhook=settings.name,
                        kind=notice.kind,
                        host=notice.host,
                        container=notice.container.name if notice.container else None,
                        status=status,
                        attempts=attempts,
                        ms=round((time.monotonic() - started) * 1000),
                    )
                    return True
                error = f"HTTP {status}"
                if status < 500 and status not in _RETRYABLE:
                    break  # the receiver refuses this notice; asking again will not change that
            if attempt < settings.retries:
                await asyncio.sleep(self._delay(attempt))
        self._failed.inc()
        log.warning(
            "webhook failed",
            webhook=settings.name,
            kind=notice.kind,
            host=notice.host,
            container=notice.container.name if notice.container else None,
            error=error,
            attempts=attempts,
        )
        return False
