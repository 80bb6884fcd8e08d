from __future__ import annotations

import msgspec
import pytest

from fleetd.config.model import HostSettings
from fleetd.dockerapi.models import ContainerSummary, SystemInfo
from fleetd.fleet.records import EngineFacts, HostStatus, container_record, diff_containers
from fleetd.fleet.state import AmbiguousContainer, ContainerQuery, FleetState, PollFailure, PollSuccess

NOW = 1_800_000_000.0


def _summary(
    cid: str, name: str, state: str = "running", status: str = "Up 1 hour", **kw: object
) -> ContainerSummary:
    return ContainerSummary(
        Id=cid * 64 if len(cid) == 1 else cid,
        Names=[f"/{name}"],
        Image=str(kw.get("image", "nginx:1.27")),
        ImageID="sha256:" + "ab" * 32,
        State=state,
        Status=status,
        Labels=dict(kw.get("labels", {})),  # type: ignore[call-overload]
        Created=1_700_000_000,
    )


def _fleet() -> FleetState:
    """Written through the writer, as the poller does: ``a`` up, ``b`` down since its last success."""
    state = FleetState(clock=lambda: NOW)
    state.add(HostSettings(name="a", url="tcp://127.0.0.1:1", interval=10, timeout=2))
    state.add(HostSettings(name="b", url="tcp://127.0.0.1:2", interval=10, timeout=2))
    state.add(HostSettings(name="c", url="tcp://127.0.0.1:3", enabled=False))
    a_rows = tuple(
        sorted(
            (
                container_record("a", _summary("1", "web-1", labels={"app": "web"}), None),
                container_record("a", _summary("2", "webhook", labels={"app": "hook"}), None),
                container_record(
                    "a", _summary("3", "db", "exited", "Exited (0) 2 hours ago", image="postgres:16"), None
                ),
            ),
            key=lambda c: c.name,
        )
    )
    b_rows = (
        container_record(
            "b", _summary("4", "web-2", status="Up 1 hour (unhealthy)", labels={"app": "web"}), None
        ),
    )
    facts = EngineFacts.from_info(SystemInfo(ID="SAME"), "1.41")
    for name, rows, at in (("a", a_rows, NOW - 1), ("b", b_rows, NOW - 100)):
        state.poll_done(name, 0.1, PollSuccess(at, facts, msgspec.Raw(b"{}"), rows, diff_containers((), rows)))
    state.poll_done("b", 0.1, PollFailure(NOW - 50, HostStatus.DOWN, "connection refused"))
    return state


def test_containers_are_ordered_by_host_then_name_and_stale_is_marked() -> None:
    out = _fleet().containers(ContainerQuery())
    assert [(c.host, c.name) for c in out] == [("a", "db"), ("a", "web-1"), ("a", "webhook"), ("b", "web-2")]
    assert [c.stale for c in out if c.host == "b"] == [True]
    assert not any(c.stale for c in out if c.host == "a")


def test_filters_combine() -> None:
    fleet = _fleet()
    assert {c.name for c in fleet.containers(ContainerQuery(labels=("app=web",)))} == {"web-1", "web-2"}
    assert {c.name for c in fleet.containers(ContainerQuery(labels=("app",), hosts=("a",)))} == {
        "web-1",
        "webhook",
    }
    assert [c.name for c in fleet.containers(ContainerQuery(state="exited"))] == ["db"]
    assert [c.name for c in fleet.containers(ContainerQuery(health="unhealthy"))] == ["web-2"]
    assert [c.name for c in fleet.containers(ContainerQuery(stale=True))] == ["web-2"]
    assert [c.name for c in fleet.containers(ContainerQuery(image="postgres"))] == ["db"]
    assert {c.name for c in fleet.containers(ContainerQuery(name="web*"))} == {"web-1", "webhook", "web-2"}
    assert not fleet.containers(ContainerQuery(name="web"))  # exact or a glob, never a substring


def test_staleness_by_age_even_when_up() -> None:
    fleet = _fleet()
    rec = fleet.get("a")
    assert rec is not None
    assert not rec.is_stale(NOW)
    assert rec.is_stale(NOW - 1 + 2 * 10 + 2 + 0.5)  # older than 2 × interval + timeout


def test_duplicate_engine_ids_are_kept_and_flagged() -> None:
    fleet = _fleet()
    assert fleet.duplicate_engine_ids() == {"SAME": ["a", "b"]}
    assert len(fleet) == 3


def test_find_container_by_name_prefix_and_ambiguity() -> None:
    fleet = _fleet()
    assert (found := fleet.find_container("a", "db")) is not None and found.name == "db"
    assert (found := fleet.find_container("a", "1111")) is not None and found.name == "web-1"
    assert fleet.find_container("a", "nope") is None
    fleet.upsert_containers("a", [container_record("a", _summary("1" * 12 + "f" * 52, "other"), None)])
    with pytest.raises(AmbiguousContainer):
        fleet.find_container("a", "1111")


def test_summary_counts_stale_separately() -> None:
    s = msgspec.to_builtins(_fleet().summary())
    assert s["hosts"] == {
        "total": 3,
        "by_state": {"unknown": 0, "up": 1, "down": 1, "error": 0, "disabled": 1},
        "stale": 1,
        "duplicate_engine_id": 2,
    }
    assert s["containers"] == {"total": 4, "by_state": {"exited": 1, "running": 3}, "stale": 1}


def test_readiness_waits_for_every_enabled_host_then_stays() -> None:
    fleet = FleetState(clock=lambda: NOW)
    fleet.add(HostSettings(name="a", url="tcp://127.0.0.1:1"))
    fleet.add(HostSettings(name="c", url="tcp://127.0.0.1:3", enabled=False))
    assert not fleet.is_ready()
    fleet.poll_done("a", 0.1, PollFailure(NOW, HostStatus.DOWN, "connection refused"))  # its first attempt ended
    assert fleet.is_ready()
    fleet.add(HostSettings(name="new", url="tcp://127.0.0.1:4"))
    assert fleet.is_ready()


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("Up 2 minutes (healthy)", "healthy"),
        ("Up 2 minutes (unhealthy)", "unhealthy"),
        ("Up 3 seconds (health: starting)", "starting"),
        ("Up 2 minutes", "none"),
        ("Exited (1) 3 minutes ago", "none"),
    ],
)
def test_health_is_read_from_the_status(status: str, health: str) -> None:
    assert container_record("h", _summary("9", "x", status=status), None).health == health
