"""Prometheus metrics.

Per-host gauges are computed at scrape time from FleetState (:class:`HostFamilies`, written
straight into the text format), so they are never out of step with the API. Histograms and counters are observed where things
happen: the poller (poll durations) and the API's middleware (requests by route template,
fleetd/api/app.py). Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Iterator, Mapping
from itertools import chain

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleetd.config.live import LiveConfig
from fleetd.fleet.match import CONTAINER_STATES
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.util.version import fleetd_version

__all__ = ["KNOWN_CONTAINER_STATES", "FleetMetrics", "HostFamilies", "bounded_states", "fleetd_version"]

_POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


#: The container states the Engine API documents; any other value a daemon sends is counted as
#: ``other``, so a daemon cannot mint label values (series) at will.
KNOWN_CONTAINER_STATES = CONTAINER_STATES


def bounded_states(by_state: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for state, n in by_state.items():
        key = state if state in KNOWN_CONTAINER_STATES else "other"
        out[key] = out.get(key, 0) + n
    return out


def _escape(value: str) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


#: The per-host families, in the order they are written: (name as written, type, help).
_HOST_FAMILIES = (
    ("fleetd_host_up", "gauge", "1 when the host's last poll succeeded (no sample for a disabled host)"),
    ("fleetd_host_state", "gauge", "The host's state, one-hot"),
    ("fleetd_host_stale", "gauge", "1 when the host's data is stale"),
    ("fleetd_host_last_success_timestamp_seconds", "gauge", "Unix time of the last successful poll"),
    ("fleetd_host_consecutive_failures", "gauge", "Failed polls since the last success"),
    (
        "fleetd_host_polls_overdue_total",
        "counter",
        "Times the host's next poll had not started timeout + 1 s after it was due",
    ),
    ("fleetd_host_last_poll_duration_seconds", "gauge", "Duration of the host's last poll"),
    ("fleetd_host_duplicate_engine_id", "gauge", "1 when another host reports the same engine ID"),
    ("fleetd_host_containers", "gauge", "Containers last seen on the host, by state"),
)
_BIT = ("0.0", "1.0")


class HostFamilies:
    """The per-host gauges, computed at scrape time from FleetState so they are never out of step with
    the API, and written straight into the text format: at 10,000 hosts that is ~150,000 samples,
    which prometheus_client's generic collector path turned into seconds of blocked event loop
    (bench/metrics_bench.py). :meth:`render` hands the loop back every ``chunk`` hosts."""

    def __init__(self, state: FleetState, *, chunk: int = 250) -> None:
        self._state = state
        self._chunk = chunk

    async def render(self) -> bytes:
        state = self._state
        records = state.sorted_records()
        await asyncio.sleep(0)
        duplicates = {n for names in state.duplicate_engine_ids().values() for n in names}
        statuses = [(s, s.value) for s in HostStatus]
        lines: list[list[str]] = [[] for _ in _HOST_FAMILIES]
        done: list[list[bytes]] = [[f"# HELP {n} {doc}\n# TYPE {n} {kind}\n".encode()] for n, kind, doc in _HOST_FAMILIES]
        up, st, stale, last, fails, overdue, dur, dup, cont = lines
        disabled, is_up = HostStatus.DISABLED, HostStatus.UP
        for i, r in enumerate(records):
            if i and not i % self._chunk:
                _flush(lines, done)
                await asyncio.sleep(0)  # the writer may have moved on: each sample is read as it is now
            now = state.clock()
            h = _escape(r.name)
            one = f'{{host="{h}"}} '
            status = r.status
            if status is not disabled:  # not polled on purpose: no "down" alert for it
                up.append(f"fleetd_host_up{one}{_BIT[status is is_up]}\n")
            st.extend(
                f'fleetd_host_state{{host="{h}",state="{v}"}} {_BIT[status is s]}\n' for s, v in statuses
            )
            stale.append(f"fleetd_host_stale{one}{_BIT[r.is_stale(now)]}\n")
            if r.last_seen is not None:
                last.append(f"fleetd_host_last_success_timestamp_seconds{one}{float(r.last_seen)!r}\n")
            fails.append(f"fleetd_host_consecutive_failures{one}{float(r.consecutive_failures)!r}\n")
            if status is not disabled:
                overdue.append(f"fleetd_host_polls_overdue_total{one}{float(r.polls_overdue)!r}\n")
            if r.poll_duration is not None:
                dur.append(f"fleetd_host_last_poll_duration_seconds{one}{float(r.poll_duration)!r}\n")
            dup.append(f"fleetd_host_duplicate_engine_id{one}{_BIT[r.name in duplicates]}\n")
            for cstate, n in sorted(bounded_states(r.tally().by_state).items()):
                cont.append(f'fleetd_host_containers{{host="{h}",state="{cstate}"}} {float(n)!r}\n')
        _flush(lines, done)
        await asyncio.sleep(0)
        return b"".join(chain.from_iterable(done))


def _flush(lines: list[list[str]], done: list[list[bytes]]) -> None:
    """Move each family's pending lines into its encoded pieces (a chunk at a time, never all at once)."""
    for pending, pieces in zip(lines, done, strict=True):
        if pending:
            pieces.append("".join(pending).encode())
            pending.clear()


class _ConfigCollector(Collector):
    def __init__(self, config: LiveConfig) -> None:
        self._config = config

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "fleetd_config_last_reload_successful", "1 when the last configuration (re)load succeeded"
        )
        ok.add_metric([], 1.0 if self._config.last_reload_ok else 0.0)
        yield ok
        ts = GaugeMetricFamily(
            "fleetd_config_last_reload_success_timestamp_seconds", "Unix time of the last successful (re)load"
        )
        ts.add_metric([], self._config.last_reload_success or 0.0)
        yield ts


class FleetMetrics:
    """Everything fleetd exports, on a registry of its own (a fresh one per test)."""

    def __init__(
        self, state: FleetState, config: LiveConfig, registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.poll_duration = Histogram(
            "fleetd_poll_duration_seconds",
            "Duration of host polls, fleet-wide",
            ["outcome"],
            buckets=_POLL_BUCKETS,
            registry=self.registry,
        )
        self._poll_children: tuple[Histogram, Histogram] | None = None  # (failure, success): see observe_poll
        self.api_requests = Counter(
            "fleetd_api_requests",
            "API requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.api_latency = Histogram(
            "fleetd_api_request_duration_seconds",
            "API request latency by route template",
            ["method", "route"],
            registry=self.registry,
        )
        build = Info("fleetd_build", "fleetd build information", registry=self.registry)
        build.info({"version": fleetd_version(), "python": platform.python_version()})
        self.registry.register(_ConfigCollector(config))
        self.hosts = HostFamilies(state)

    async def exposition(self) -> bytes:
        """Everything, in the Prometheus text format: the registry's metrics, then the per-host families."""
        return generate_latest(self.registry) + await self.hosts.render()

    def observe_poll(self, host: str, seconds: float, ok: bool) -> None:
        # The two children, looked up once (labels() costs more than observe(): a poll every few ms).
        children = self._poll_children
        if children is None:
            children = self._poll_children = (
                self.poll_duration.labels("failure"),
                self.poll_duration.labels("success"),
            )
        children[ok].observe(seconds)
