"""The Docker endpoint's pure rules: filters in both JSON forms, placement, version windows, identity."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from fleetd.config.model import HostSettings
from fleetd.dockercompat.errors import DockerAPIError, error_response
from fleetd.dockercompat.filters import CONTAINER_FILTERS, match_container, parse_filters
from fleetd.dockercompat.identity import Identity
from fleetd.dockercompat.placement import choose_host, extract_rules
from fleetd.dockercompat.versions import Window, advertised_version, clamp, too_new
from fleetd.fleet.records import ContainerRecord, EngineFacts, HostRecord, HostStatus, ImageRecord
from fleetd.fleet.state import FleetState
from tests.writes import poll_failed, poll_ok


def container(host: str, name: str, cid: str, **kw: Any) -> ContainerRecord:
    return ContainerRecord(
        host=host, id=cid, name=name, names=[name], image=kw.get("image", "busybox:1"), image_id="sha256:" + "ab" * 32,
        command="sleep", state=kw.get("state", "running"), status=kw.get("status", "Up 1 hour"), health="none",
        created="2026-12-01T10:00:00Z", labels=kw.get("labels", {}), ports=[], observed_at=None,
    )  # fmt: skip


def record(
    state: FleetState, name: str, containers: list[ContainerRecord], *, images: tuple[str, ...] = (), **labels: str
) -> HostRecord:
    """A host up after one poll of ``state`` that listed these containers and images."""
    state.add(HostSettings(name=name, url=f"tcp://127.0.0.1:{2300 + len(name)}", labels=labels))
    return poll_ok(
        state,
        name,
        containers,
        images=[ImageRecord(id=f"sha256:{name}{i}", tags=[t], digests=[], size=1, created=None, labels={})
                for i, t in enumerate(images)],
        facts=EngineFacts("ID", name, "20.10", "1.41", "Debian", "linux", "6.1", "x86_64", 2, 1, "overlay2"),
    )  # fmt: skip


def test_filters_in_both_json_forms() -> None:
    cli = parse_filters(json.dumps({"label": {"app=web": True}, "node": {"d2": True}}), CONTAINER_FILTERS)
    py = parse_filters(json.dumps({"label": ["app=web"], "node": ["d2"]}), CONTAINER_FILTERS)
    assert cli == py == {"label": ["app=web"], "node": ["d2"]}
    with pytest.raises(DockerAPIError, match="invalid filter 'volume'"):
        parse_filters(json.dumps({"volume": ["x"]}), CONTAINER_FILTERS)


def test_container_filters() -> None:
    c = container("d2", "web4", "f" * 64, labels={"app": "web"})
    assert match_container(c, {"name": ["web4"], "label": ["app=web"], "node": ["d*"]})
    assert match_container(c, {"name": ["d2/web4"]}) and match_container(c, {"name": ["^/?web"]})
    assert not match_container(c, {"name": ["d1/web4"]})
    assert not match_container(c, {"label": ["app=web", "tier"]})  # labels must all hold
    exited = container("d1", "job", "e" * 64, state="exited", status="Exited (3) 2 hours ago")
    assert match_container(exited, {"exited": ["3"], "status": ["exited"]})
    with pytest.raises(DockerAPIError):
        match_container(exited, {"status": ["sleeping"]})


def test_placement_rules() -> None:
    state = FleetState()
    d1 = record(state, "d1", [container("d1", "a", "1" * 64)], images=("redis:7",), env="prod")
    d2 = record(state, "d2", [], env="dev")
    d3 = record(state, "d3", [container("d3", "b", "2" * 64), container("d3", "c", "3" * 64)], env="prod")
    hosts = [d1, d2, d3]
    body: dict[str, Any] = {"Image": "busybox", "Env": ["A=1", "constraint:env==prod", "affinity:container==b"]}
    placement = extract_rules(body, None, {"d1", "d2", "d3"})
    assert body["Env"] == ["A=1"]
    assert json.loads(body["Labels"]["com.docker.swarm.constraints"]) == ["env==prod"]
    assert choose_host(hosts, placement, "busybox").name == "d3"
    assert choose_host(hosts, extract_rules({"Image": "x"}, None, set()), "x").name == "d2"  # fewest containers
    assert choose_host(hosts, extract_rules({"Image": "redis:7"}, None, set()), "redis:7").name == "d1"  # has it
    assert choose_host(hosts, extract_rules({"Env": ["constraint:node!=d2"]}, None, set()), "x").name == "d1"
    assert choose_host(hosts, extract_rules({"Env": ["constraint:node==/d[23]/"]}, None, set()), "x").name == "d2"
    soft = extract_rules({"Env": ["constraint:env==~nowhere"]}, None, set())
    assert choose_host(hosts, soft, "x").name == "d2"  # a preference nobody meets is no refusal
    pinned = extract_rules({}, "d3/api", {"d1", "d2", "d3"})
    assert (pinned.pinned, pinned.name, choose_host(hosts, pinned, "x").name) == ("d3", "api", "d3")
    with pytest.raises(DockerAPIError, match="unable to find a host that satisfies the constraint node==d9"):
        choose_host(hosts, extract_rules({"Env": ["constraint:node==d9"]}, None, set()), "x")
    poll_failed(state, "d2")
    assert d2.status is HostStatus.DOWN
    assert choose_host(hosts, extract_rules({"Image": "x"}, None, set()), "x").name == "d1"  # down hosts excluded


def test_versions() -> None:
    assert advertised_version(["1.41", "1.52"]) == "1.41"
    assert advertised_version(["1.38"]) == "1.40"  # docker CLI 29 refuses less
    assert advertised_version([]) == "1.51"
    assert clamp("1.41", Window("1.44", "1.52")) == "1.44"
    assert clamp("1.50", Window("1.12", "1.41")) == "1.41"
    assert too_new("1.42", "1.41") == "client version 1.42 is too new. Maximum supported API version is 1.41"
    assert too_new("1.41", "1.41") is None


def test_identity_order_and_ambiguity() -> None:
    state = FleetState()
    for name, cs in (
        ("d1", [container("d1", "web1", "a1" + "0" * 62)]),
        ("d2", [container("d2", "web1", "b2" + "0" * 62), container("d2", "web4", "a1b" + "0" * 61)]),
    ):
        state.add(HostSettings(name=name, url="tcp://127.0.0.1:1"))
        poll_ok(state, name, cs)
    from fleetd.dockercompat.upstream import FleetAccess

    ident = Identity(FleetAccess(state, None, None, lambda: None))  # type: ignore[arg-type]
    assert ident.lookup("d2/web1") is not None and ident.lookup("d2/web1").host == "d2"  # type: ignore[union-attr]
    assert ident.lookup("web4").host == "d2"  # type: ignore[union-attr]
    assert ident.lookup("b2").host == "d2"  # type: ignore[union-attr]
    with pytest.raises(DockerAPIError) as amb:
        ident.lookup("web1")
    assert amb.value.status == 400 and "d1/web1" in amb.value.message and "d2/web1" in amb.value.message
    with pytest.raises(DockerAPIError) as prefix:
        ident.lookup("a1")  # a prefix of ids on two hosts
    assert prefix.value.status == 400
    assert ident.lookup("a1b").name == "web4"  # type: ignore[union-attr]
    assert ident.lookup("nosuch") is None
    with pytest.raises(DockerAPIError) as bad:
        ident.lookup("d9/web1")
    assert bad.value.status == 404


def test_errors_are_exactly_application_json() -> None:
    resp = error_response(404, "No such container: x")
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.body is not None and msgspec.json.decode(resp.body) == {"message": "No such container: x"}
