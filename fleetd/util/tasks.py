"""Background work that outlives the request that started it, and periodic loops that log and go on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

import structlog

__all__ = ["InflightTasks", "every"]

T = TypeVar("T")


class InflightTasks(Generic[T]):
    """Tasks that a caller's cancellation does not abandon (callers ``await asyncio.shield(task)``);
    whoever owns them waits for them at shutdown with :meth:`wait`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[T]] = set()

    def start(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[T]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here (the owner logs failures): its caller may be gone

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, grace: float) -> set[asyncio.Task[T]]:
        """Wait up to ``grace`` seconds for the tasks in flight now; returns those still running."""
        pending = set(self._tasks)
        if not pending:
            return set()
        _, still = await asyncio.wait(pending, timeout=grace)
        return still


async def every(
    seconds: Callable[[], float], step: Callable[[], Awaitable[object]], *, what: str, logger_name: str
) -> None:
    """Run ``step`` now and then every ``seconds()`` until cancelled; a failure is logged, never fatal."""
    log = structlog.get_logger(logger_name)
    while True:
        try:
            await step()
        except Exception as exc:
            log.error(f"{what} failed", error=str(exc) or repr(exc))
        await asyncio.sleep(seconds())
