"""The client's building blocks without a fleetd: templates, tables, colour rules, endpoints, SSE frames."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.text import Text

from fleetd.ctl.connect import resolve_endpoint
from fleetd.ctl.errors import CtlError
from fleetd.ctl.output import Column, Table, colour_wanted, stable_colour
from fleetd.ctl.ps import FIELDS, ports_text
from fleetd.ctl.sse import FrameParser
from fleetd.ctl.template import parse_template

C = {
    "host": "d1", "id": "0123456789abcdef" * 4, "name": "web1", "names": ["web1", "alias"],
    "image": "nginx:1.27", "image_id": "sha256:aa", "command": "nginx -g 'daemon off;'", "state": "running",
    "status": "Up 3 minutes", "health": "none", "created": "2026-12-03T10:00:00Z", "labels": {"app": "web"},
    "ports": [{"private_port": 80, "type": "tcp", "ip": "0.0.0.0", "public_port": 8080},
              {"private_port": 443, "type": "tcp", "ip": None, "public_port": None}],
    "observed_at": "2026-12-03T10:03:00Z", "stale": False,
}  # fmt: skip


def test_templates_take_docker_fields_labels_json_and_tables() -> None:
    assert parse_template("{{.Host}}/{{.Names}} {{.ID}}", FIELDS).render(C, C) == f"d1/web1,alias {C['id']}"
    assert parse_template('{{.Label "app"}}:{{upper .State}}', FIELDS).render(C, C) == "web:RUNNING"
    assert parse_template("{{json .Labels}}", FIELDS).render(C, C) == '{"app": "web"}'
    assert parse_template("{{.Ports}}", FIELDS).render(C, C) == "0.0.0.0:8080->80/tcp, 443/tcp"
    table = parse_template('table {{.Host}}\\t{{.ID}}\\t{{.Label "app"}}', FIELDS)
    assert table.table and table.headers({"ID": "CONTAINER ID", "Host": "HOST"}) == [
        "HOST",
        "CONTAINER ID",
        "APP",
    ]
    assert parse_template("json", FIELDS).render(C, C).startswith('{"command": ')
    for bad, says in (("{{.Nope}}", "unknown field '.Nope'"), ("{{index .Labels 1}}", "not supported"),
                      ("{{.ID", "unclosed"), ("table ", "needs fields")):  # fmt: skip
        with pytest.raises(CtlError, match=says):
            parse_template(bad, FIELDS)


def test_ports_like_docker_ps() -> None:
    assert ports_text([]) == ""
    assert (
        ports_text([{"private_port": 53, "type": "udp", "ip": "::", "public_port": 53}]) == "[::]:53->53/udp"
    )


def test_tables_fit_the_width_by_cutting_shrinkable_columns_never_wrapping() -> None:
    table = Table(
        (Column("HOST", shrink=False), Column("ID", shrink=False), Column("NAME"), Column("STATUS"))
    )
    table.add("d1", "0123456789ab", "a-very-long-container-name-indeed", "Up 3 minutes (healthy)")
    table.add("host-two", "ba9876543210", Text("日本語の名前", style="red"), "Exited (137) 2 hours ago")
    wide = [line.plain for line in table.lines(None)]
    assert wide[0].split() == ["HOST", "ID", "NAME", "STATUS"] and all(line == line.rstrip() for line in wide)
    assert "a-very-long-container-name-indeed" in wide[1]
    for width in (60, 45, 38):
        lines = [line.plain for line in table.lines(width)]
        assert all(cell_len(line) <= width for line in lines), (width, lines)
        assert len(lines) == 3  # one line per row: cut, not wrapped
        assert lines[1].startswith("d1         0123456789ab") and lines[2].startswith(
            "host-two   ba9876543210"
        )
        assert "…" in lines[1]


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert colour_wanted(Tty(), {}) is True
    assert colour_wanted(Tty(), {"NO_COLOR": "1"}) is False
    assert colour_wanted(Tty(), {"NO_COLOR": ""}) is True  # no-color.org: set and not empty
    assert colour_wanted(io.StringIO(), {}) is False
    assert stable_colour("d1/web1") == stable_colour("d1/web1")
    assert len({stable_colour(f"d{i}/web") for i in range(20)}) > 3


def test_endpoint_from_options_environment_and_config(tmp_path: Path) -> None:
    config = tmp_path / "fleetd.yaml"
    config.write_text("listen: 0.0.0.0:9090\nlisten_tls: {cert: c.pem, key: k.pem}\nhosts: [{bad: entry}]\n")
    token = tmp_path / "t"
    token.write_text("s3cret\n")
    ep = resolve_endpoint(config=str(config), token_file=str(token), env={})
    assert (ep.url, ep.token) == ("https://127.0.0.1:9090", "s3cret") and str(config) in ep.source
    assert resolve_endpoint(url="fleet:8080/", env={"FLEETD_URL": "http://x:1"}).url == "http://fleet:8080"
    assert resolve_endpoint(env={"FLEETD_URL": "http://x:1", "FLEETD_TOKEN": " t "}).token == "t"
    ipv6 = tmp_path / "six.yaml"
    ipv6.write_text("listen: '[::]:8081'\n")
    assert resolve_endpoint(env={"FLEETD_CONFIG": str(ipv6)}).url == "http://[::1]:8081"
    with pytest.raises(CtlError, match="cannot read the token"):
        resolve_endpoint(token_file=str(tmp_path / "missing"), env={})
    with pytest.raises(CtlError, match="not an http"):
        resolve_endpoint(url="ftp://x", env={})
    with pytest.raises(CtlError, match="listen address"):
        resolve_endpoint(config=str(tmp_path / "nope.yaml"), env={})


def test_sse_frames() -> None:
    parser = FrameParser()
    lines = [": ping", "id: 7", "event: container.added", 'data: {"a":', "data: 1}", "", "", "data:x", ""]
    frames = [f for f in (parser.feed(line) for line in lines) if f is not None]
    assert [(f.event, f.data, f.id) for f in frames] == [
        ("container.added", '{"a":\n1}', "7"),
        ("message", "x", None),
    ]
    assert frames[0].json() == {"a": 1} and parser.last_id == "7"


def test_the_clis_state_choices_are_the_servers() -> None:
    from fleetd.ctl.parser import CONTAINER_STATES, HOST_STATES
    from fleetd.fleet.match import CONTAINER_STATES as SERVER_CONTAINER_STATES
    from fleetd.fleet.records import HostStatus

    assert set(CONTAINER_STATES) == SERVER_CONTAINER_STATES
    assert set(HOST_STATES) == {s.value for s in HostStatus}
