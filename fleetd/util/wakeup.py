"""A small ``asyncio.Event`` for objects there is one of per host.

An ``asyncio.Event`` costs about 750 bytes, most of it the ``deque`` of its waiters (a deque always
allocates a block of 64 slots); a fleet of 1,000 hosts with a few per host pays megabytes for
waiters that are nearly always zero or one. :class:`Wakeup` has the same ``set``/``clear``/
``is_set``/``wait`` behaviour, keeps its waiters in a list made only when someone waits, and uses
``__slots__``: about 60 bytes idle.
"""

from __future__ import annotations

import asyncio
from typing import Literal

__all__ = ["Wakeup"]


class Wakeup:
    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        waiters = len(self._waiters) if self._waiters else 0
        return f"<Wakeup {'set' if self._flag else 'unset'}, waiters:{waiters}>"

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter (a waiter cancelled meanwhile is skipped)."""
        if self._flag:
            return
        self._flag = True
        for fut in self._waiters or ():
            if not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> Literal[True]:
        """Return at once when set; otherwise wait until :meth:`set` is called."""
        if self._flag:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            await fut
            return True
        finally:
            self._waiters.remove(fut)
            if not self._waiters:
                self._waiters = None
