"""Record reuse between polls and the per-host tally used by summaries."""

from __future__ import annotations

from fleetd.config.model import HostSettings
from fleetd.dockerapi.models import ContainerSummary
from fleetd.fleet.builder import ContainerRecords
from fleetd.fleet.records import container_record
from fleetd.fleet.state import FleetState
from tests.writes import poll_ok


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
    state = FleetState()
    state.add(HostSettings(name="h", url="tcp://127.0.0.1:1"))
    builder = ContainerRecords()
    rec = poll_ok(state, "h", builder.build("h", [_c("a", "web"), _c("b", "db", "exited", "postgres:16")], None))
    assert rec.running == 1
    assert rec.tally().by_image == {"nginx:1.27": 1, "postgres:16": 1}
    poll_ok(state, "h", builder.build("h", [_c("a", "web"), _c("c", "web2")], None))
    assert rec.running == 2 and rec.tally().by_state == {"running": 2}


def test_what_containers_share_across_hosts_is_kept_once() -> None:
    import msgspec

    from fleetd.dockerapi.models import ImageSummary
    from fleetd.fleet.records import image_record

    def summary(cid: str, host_ports: list[dict[str, object]], names: list[str]) -> ContainerSummary:
        doc = {"Id": cid * 64, "Names": names, "Image": "nginx:1.27", "State": "running", "Status": "Up",
               "Ports": host_ports, "Labels": {"app": "web"}}  # fmt: skip
        return msgspec.json.decode(msgspec.json.encode(doc), type=ContainerSummary)  # fresh strings each

    ports = [{"PrivatePort": 80, "Type": "tcp"}]
    a = container_record("h1", summary("a", ports, ["/web-1"]), None)
    b = container_record("h2", summary("b", ports, ["/web-1"]), None)
    assert a.names == ["web-1"] and a.names is b.names and a.name is b.name
    assert a.ports == b.ports and a.ports is b.ports
    assert a.labels is b.labels and a.image is b.image
    healthy = [
        container_record("h", msgspec.json.decode(msgspec.json.encode(
            {"Id": "f" * 64, "Names": ["/x"], "State": "running", "Status": "Up 2 hours (healthy)"}
        ), type=ContainerSummary), None)
        for _ in range(2)
    ]  # fmt: skip
    assert healthy[0].health == "healthy" and healthy[0].health is healthy[1].health
    c = container_record("h1", summary("c", [], ["/db"]), None)
    d = container_record("h2", summary("d", [], ["/db", "/h1/db-alias"]), None)
    assert c.ports == [] and c.ports is d.ports  # one empty list for every container without ports
    assert d.names == ["db", "h1/db-alias"] and d.name == "db"
    assert container_record("h", summary("e", [], []), None).name == "e" * 12  # no name: the short id

    def image(tag: str) -> ImageSummary:
        doc = {"Id": "sha256:" + "ab" * 32, "RepoTags": [tag, "<none>:<none>"], "Labels": {"v": "1"}, "Size": 5,
               "Created": 0}  # fmt: skip
        return msgspec.json.decode(msgspec.json.encode(doc), type=ImageSummary)

    i1, i2 = image_record(image("nginx:1.27")), image_record(image("nginx:1.27"))
    assert i1 == i2 and i1.tags == ["nginx:1.27"]
    assert i1.id is i2.id and i1.tags is i2.tags and i1.digests is i2.digests and i1.labels is i2.labels
