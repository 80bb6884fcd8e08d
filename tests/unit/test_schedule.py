from __future__ import annotations

import random

from fleetd.fleet.schedule import Schedule


def test_steady_polls_never_exceed_the_interval_and_spread_phases() -> None:
    firsts = []
    for seed in range(50):
        s = Schedule(interval=10.0, jitter=0.1, rng=random.Random(seed))
        now = 0.0
        due = s.next_due(now, 0)
        firsts.append(due)
        assert 1.0 <= due <= 10.0
        for _ in range(20):
            prev, due = due, s.next_due(due, 0)
            assert 9.0 <= due - prev <= 10.0
    # phases differ between hosts: the start-up burst is spread over the interval
    assert max(firsts) - min(firsts) > 5.0


def test_backoff_grows_is_capped_and_resets() -> None:
    s = Schedule(interval=2.0, jitter=0.1, max_backoff=16.0, rng=random.Random(1))
    delays = [s.next_due(100.0, n) - 100.0 for n in range(1, 9)]
    assert 1.8 <= delays[0] <= 2.0  # the first retry is one interval
    assert all(d <= 16.0 for d in delays)
    assert delays[-1] >= 8.0  # at the cap, jittered between half and all of it
    assert delays[3] > delays[0]
    after = s.next_due(200.0, 0) - 200.0
    assert after <= 2.0  # success resets the backoff


def test_backoff_cap_never_below_interval() -> None:
    s = Schedule(interval=60.0, jitter=0.0, max_backoff=5.0, rng=random.Random(2))
    assert s.next_due(0.0, 5) <= 60.0
    assert s.next_due(0.0, 5) >= 30.0
