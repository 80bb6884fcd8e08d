"""Wakeup behaves as asyncio.Event does for set/clear/is_set/wait, cancellation included."""

from __future__ import annotations

import asyncio

import pytest

from fleetd.util.wakeup import Wakeup


async def test_wait_returns_at_once_when_set_and_waits_after_clear() -> None:
    w = Wakeup()
    assert not w.is_set()
    w.set()
    assert w.is_set()
    assert await asyncio.wait_for(w.wait(), 1) is True
    w.clear()
    assert not w.is_set()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(w.wait(), 0.05)


async def test_set_wakes_every_waiter_and_forgets_them() -> None:
    w = Wakeup()
    waiters = [asyncio.ensure_future(w.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(t.done() for t in waiters)
    w.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert w._waiters is None  # nothing kept once nobody waits


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    w = Wakeup()
    cancelled = asyncio.ensure_future(w.wait())
    other = asyncio.ensure_future(w.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not other.done()
    w.set()
    assert await asyncio.wait_for(other, 1) is True


async def test_set_from_a_timer_callback_wakes_the_waiter() -> None:
    w = Wakeup()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, w.set)
    assert await asyncio.wait_for(w.wait(), 1) is True
