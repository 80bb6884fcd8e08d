"""What a read of the container index costs: nothing per host (every write goes through the state's
writer, which keeps the index; tests/conftest.py makes a write around it fail)."""

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


def test_reads_do_not_walk_the_hosts() -> None:
    state = _state()
    q = ContainerQuery(labels=("app=db",))
    CountingHosts.walks = 0
    assert len(state.containers_page(q, 0, 2)[0]) == 2  # the first read too: nothing to re-check
    for _ in range(5):
        assert state.containers_page(q, 0, 2)[1] == 3
        state.summary()
        poll(state, "b", (container("b", "db", labels={"app": "db"}),), NOW + 1)  # through the writer
    assert CountingHosts.walks == 0
