"""Prometheus metrics.

Per-host gauges are computed at scrape time from FleetState (a custom Collector), so they
are never out of step with the API. Histograms and counters are observed where things
happen: the poller (poll durations) and the API's middleware (requests by route template,
fleetd/api/app.py). Nothing here knows HTTP.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleetd.config.live import LiveConfig
from fleetd.fleet.match import CONTAINER_STATES
from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.util.version import fleetd_version

__all__ = ["KNOWN_CONTAINER_STATES", "FleetMetrics", "bounded_states", "fleetd_version"]

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


class _FleetCollector(Collector):
    def __init__(self, state: FleetState, config: LiveConfig) -> None:
        self._state = state
        self._config = config

    def collect(self) -> Iterator[Metric]:
        now = self._state.clock()
        up = GaugeMetricFamily("fleetd_host_up", "1 when the host's last poll succeeded (no sample for a disabled host)", labels=["host"])
        st = GaugeMetricFamily("fleetd_host_state", "The host's state, one-hot", labels=["host", "state"])
        stale = GaugeMetricFamily("fleetd_host_stale", "1 when the host's data is stale", labels=["host"])
        last = GaugeMetricFamily(
            "fleetd_host_last_success_timestamp_seconds",
            "Unix time of the last successful poll",
            labels=["host"],
        )
        fails = GaugeMetricFamily(
            "fleetd_host_consecutive_failures", "Failed polls since the last success", labels=["host"]
        )
        overdue = CounterMetricFamily(
            "fleetd_host_polls_overdue",
            "Times the host's next poll had not started timeout + 1 s after it was due",
            labels=["host"],
        )
        dur = GaugeMetricFamily(
            "fleetd_host_last_poll_duration_seconds", "Duration of the host's last poll", labels=["host"]
        )
        dup = GaugeMetricFamily(
            "fleetd_host_duplicate_engine_id",
            "1 when another host reports the same engine ID",
            labels=["host"],
        )
        cont = GaugeMetricFamily(
            "fleetd_host_containers", "Containers last seen on the host, by state", labels=["host", "state"]
        )
        duplicates = {n for names in self._state.duplicate_engine_ids().values() for n in names}
        states = [s.value for s in HostStatus]
        for r in self._state.sorted_records():
            name = r.name
            if r.status is not HostStatus.DISABLED:  # not polled on purpose: no "down" alert for it
                up.add_metric([name], 1.0 if r.status is HostStatus.UP else 0.0)
            for s in states:
                st.add_metric([name, s], 1.0 if r.status.value == s else 0.0)
            stale.add_metric([name], 1.0 if r.is_stale(now) else 0.0)
            if r.last_seen is not None:
                last.add_metric([name], r.last_seen)
            fails.add_metric([name], float(r.consecutive_failures))
            if r.status is not HostStatus.DISABLED:
                overdue.add_metric([name], float(r.polls_overdue))
            if r.poll_duration is not None:
                dur.add_metric([name], r.poll_duration)
            dup.add_metric([name], 1.0 if name in duplicates else 0.0)
            for cstate, n in sorted(bounded_states(r.tally().by_state).items()):
                cont.add_metric([name, cstate], float(n))
        yield from (up, st, stale, last, fails, overdue, dur, dup, cont)
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
        self.registry.register(_FleetCollector(state, config))

    def observe_poll(self, host: str, seconds: float, ok: bool) -> None:
        self.poll_duration.labels("success" if ok else "failure").observe(seconds)
