"""Record reuse between polls and the per-host tally used by summaries."""

from __future__ import annotations

from fleetd.config.model import HostSettings
from fleetd.dockerapi.models import ContainerSummary
from fleetd.fleet.builder import ContainerRecords
from fleetd.fleet.records import HostRecord, container_record


def _c(cid: str, name: str, state: str = "running", image: str = "nginx:1.27") -> ContainerSummary:
    return ContainerSummary(Id=cid * 64, Names=(f"/{name}",), Image=image, State=state, Status="Up 1 hour")  # type: ignore[arg-type]


def test_unchanged_containers_reuse_their_record_with_a_new_observed_at() -> None:
    builder = ContainerRecords()
    first = builder.build("h", [_c("a", "web"), _c("b", "db")], "2026-11-30T10:00:00Z")
    assert [r.name for r in first] == ["db", "web"]
    second = builder.build("h", [_c("a", "web"), _c("b", "db", state="exited")], "2026-11-30T10:00:15Z")
    by_name = {r.name: r for r in second}
    assert by_name["web"].observed_at == "2026-11-30T10:00:15Z"
    assert by_name["web"] == type(by_name["web"])(
        **{**_fields(first[1]), "observed_at": "2026-11-30T10:00:15Z"}
    )
    assert by_name["db"].state == "exited"  # a changed summary is rebuilt, not reused
    assert by_name["db"] == container_record("h", _c("b", "db", state="exited"), "2026-11-30T10:00:15Z")
    third = builder.build("h", [_c("a", "web")], "2026-11-30T10:00:30Z")
    assert [r.name for r in third] == ["web"]  # a removed container is gone


def _fields(record: object) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(record)  # type: ignore[arg-type]


def test_tally_follows_the_current_containers() -> None:
    rec = HostRecord(settings=HostSettings(name="h", url="tcp://127.0.0.1:1"))
    builder = ContainerRecords()
    rec.containers = builder.build("h", [_c("a", "web"), _c("b", "db", "exited", "postgres:16")], None)
    assert rec.running == 1
    assert rec.tally().by_image == {"nginx:1.27": 1, "postgres:16": 1}
    rec.containers = builder.build("h", [_c("a", "web"), _c("c", "web2")], None)
    assert rec.running == 2 and rec.tally().by_state == {"running": 2}
