"""What a read of the container index costs: nothing per host while every write went through the
state's writer, one look at every host after rows were written around it (tests and tools do)."""

from __future__ import annotations

from collections.abc import Iterator

from fleetd.config.model import HostSettings
from fleetd.fleet.records import HostRecord
from fleetd.fleet.state import ContainerQuery, FleetState
from tests.unit.snapshotkit import NOW, Clock, container
from tests.unit.test_index import poll


class CountingHosts(dict[str, HostRecord]):
    """The state's hosts, counting how often a reader walks them."""

    walks = 0

    def values(self):  # type: ignore[override]
        CountingHosts.walks += 1
        return super().values()

    def __iter__(self) -> Iterator[str]:
        CountingHosts.walks += 1
        return super().__iter__()


def _state() -> FleetState:
    state = FleetState(clock=Clock())
    for i, name in enumerate(("a", "b", "c")):
        state.add(HostSettings(name=name, url=f"tcp://127.0.0.1:{2375 + i}", interval=10.0, timeout=1.0))
        poll(state, name, (container(name, "web-1"), container(name, "db", labels={"app": "db"})), NOW)
    state._hosts = CountingHosts(state._hosts)
    return state


def test_reads_do_not_walk_the_hosts_while_every_write_went_through_the_writer() -> None:
    state = _state()
    q = ContainerQuery(labels=("app=db",))
    assert len(state.containers_page(q, 0, 2)[0]) == 2  # the first read checks every host once
    CountingHosts.walks = 0
    for _ in range(5):
        assert state.containers_page(q, 0, 2)[1] == 3
        state.summary()
        poll(state, "b", (container("b", "db", labels={"app": "db"}),), NOW + 1)  # through the writer
    assert CountingHosts.walks == 0


def test_rows_written_around_the_writer_are_seen_by_the_next_read() -> None:
    state = _state()
    q = ContainerQuery(labels=("app=db",))
    assert state.containers_page(q, 0, None)[1] == 3
    record = state.get("c")
    assert record is not None
    record.containers = (container("c", "db", labels={"app": "web"}),)  # around the writer
    assert [c.host for c in state.containers_page(q, 0, None)[0]] == ["a", "b"]
    assert state.summary().containers.total == 5
