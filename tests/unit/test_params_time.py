"""One reading of a point in time for every ``since``/``until`` parameter (audit, snapshots, logs)."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from fleetd.api.errors import BadRequest
from fleetd.api.params import get_time
from fleetd.util.ratelimit import ClientBuckets, FailureGate

NOW = 1_800_000_000.0


def _t(raw: str) -> float | None:
    return get_time(MultiDict({"since": raw}), "since", clock=lambda: NOW)


def test_unix_seconds_rfc3339_and_durations_back_from_now() -> None:
    assert _t("1733220000") == 1733220000.0
    assert _t("1733220000.25") == 1733220000.25
    assert _t("2026-12-03T10:00:00Z") == 1796292000.0
    assert _t("2026-12-03T11:00:00+01:00") == 1796292000.0
    assert _t("10m") == NOW - 600
    assert _t("1h30m") == NOW - 5400
    assert _t("100000000d") == 0.0  # further back than the epoch: the epoch
    assert get_time(MultiDict(), "since") is None
    assert _t("") is None


@pytest.mark.parametrize("raw", ["yesterday", "١٧٣٣٢٢٠٠٠٠", "1_000", " 5", "1e9", "-5", "9" * 13, "5.", "nan"])
def test_what_is_not_a_time_is_a_400_that_says_the_three_forms(raw: str) -> None:
    with pytest.raises(BadRequest) as exc:
        _t(raw)
    assert "Unix seconds" in exc.value.message and "RFC 3339" in exc.value.message and "10m" in exc.value.message


def test_failure_gate_blocks_guesses_but_never_a_proven_token() -> None:
    now = [0.0]
    gate = FailureGate(ClientBuckets(burst=2, per_minute=6.0, clock=lambda: now[0]))
    good, other = b"g" * 32, b"o" * 32
    gate.succeeded("10.0.0.1", good)
    assert [gate.failed("10.0.0.1") for _ in range(2)] == [False, True]
    assert gate.retry_after("10.0.0.1", None) == pytest.approx(10.0)
    assert gate.retry_after("10.0.0.1", other) == pytest.approx(10.0)  # not proven here: blocked
    assert gate.retry_after("10.0.0.1", good) is None  # proven from this address: never blocked
    assert gate.retry_after("10.0.0.2", other) is None  # other addresses are not affected
    gate.succeeded("10.0.0.2", other)
    assert gate.retry_after("10.0.0.1", other) is not None  # proven elsewhere does not count here
