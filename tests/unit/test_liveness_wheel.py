"""The liveness wheel: checks due in one tick run in one callback, each at its own deadline only."""

from __future__ import annotations

import asyncio
import itertools
import math

from fleetd.fleet.liveness import LivenessWheel


class Item:
    def __init__(self, name: str, log: list[tuple[str, float]], every: float | None = None, times: int = 1) -> None:
        self.name = name
        self.log = log
        self.every = every
        self.times = times

    def check(self, now: float) -> float | None:
        self.log.append((self.name, now))
        self.times -= 1
        if self.every is None or self.times <= 0:
            return None
        return now + self.every


class Broken:
    def check(self, now: float) -> float | None:
        raise RuntimeError("a bug in one host's check")


async def test_checks_due_in_one_tick_run_together_and_in_deadline_order() -> None:
    loop = asyncio.get_running_loop()
    wheel = LivenessWheel(tick=0.05)
    log: list[tuple[str, float]] = []
    t0 = loop.time()
    base = (math.floor((t0 + 0.1) / 0.05) + 1) * 0.05  # a tick boundary about 0.1 s ahead
    for i in range(50):
        wheel.add(Item(f"a{i}", log), base + 0.0001 + i * 0.0005)  # all within one tick
    wheel.add(Item("late", log), base + 0.2)
    wheel.add(Item("early", log), t0 + 0.02)
    await asyncio.sleep(base + 0.35 - t0)
    names = [n for n, _ in log]
    assert names[0] == "early" and names[-1] == "late" and len(names) == 52
    batch = {now for n, now in log if n.startswith("a")}
    assert len(batch) == 1  # fifty checks, one wake-up
    (when,) = batch
    assert base + 0.0246 <= when  # none before its deadline
    assert len(wheel) == 0


async def test_a_check_says_when_it_is_due_again_and_a_broken_one_stops_nobody() -> None:
    loop = asyncio.get_running_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx.get("exception")))
    try:
        wheel = LivenessWheel(tick=0.02)
        log: list[tuple[str, float]] = []
        t0 = loop.time()
        wheel.add(Broken(), t0 + 0.01)
        wheel.add(Item("rep", log, every=0.05, times=4), t0 + 0.01)
        wheel.add(Item("far", log), t0 + 0.5)  # a re-added check must not hide a bucket due before it
        wheel.add(Item("mid", log), t0 + 0.1)
        await asyncio.sleep(0.6)
        times = [now for n, now in log if n == "rep"]
        assert len(times) == 4 and all(b - a >= 0.05 - 1e-6 for a, b in itertools.pairwise(times))
        assert [n for n, _ in log if n != "rep"] == ["mid", "far"]
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        wheel.add(Item("gone", log), loop.time() + 0.01)
        wheel.close()
        await asyncio.sleep(0.05)
        assert "gone" not in [n for n, _ in log]
    finally:
        loop.set_exception_handler(None)
