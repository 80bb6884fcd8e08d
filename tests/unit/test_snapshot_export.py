"""JSON, YAML and CSV exports: parsed back with generic parsers and compared with the JSON."""

from __future__ import annotations

import csv
import io
import json

import msgspec
import pytest
import yaml

from fleetd.fleet.records import HostStatus
from fleetd.fleet.state import FleetState
from fleetd.snapshot.export import (
    CSV_COLUMNS,
    FORMATS,
    SnapshotFormatError,
    detect_format,
    dumps,
    format_from_name,
    loads,
)
from fleetd.snapshot.model import Snapshot, Trigger, build_snapshot, capture_fleet
from tests.unit.snapshotkit import Clock, add_host, container, fleet


@pytest.fixture
def snapshot() -> Snapshot:
    state = FleetState(clock=Clock())
    add_host(
        state,
        "web",
        [
            container("web", "nginx-1", labels={"a": "1", "quote": 'say "hi", then\nleave'}),
            container("web", "job-1", state="exited", status="Exited (1) 3 days ago", ports=[], created=None),
        ],
        index=1,
        labels={"env": "prod", "ünï": "cödé"},
    )
    add_host(state, "empty", [], index=2)
    add_host(state, "never", [], status=HostStatus.DOWN, index=3, last_error="dial tcp: refused", seen=False)
    return build_snapshot(capture_fleet(state, Trigger.SCHEDULE), snapshot_id=42)


def test_json_is_the_record(snapshot: Snapshot) -> None:
    data = json.loads(dumps(snapshot, "json"))
    assert data["id"] == 42 and data["trigger"] == "schedule"
    assert data["counts"] == {
        "hosts": 3, "hosts_up": 2, "hosts_failed": 1, "hosts_stale": 0, "containers": 2, "running": 1,
    }  # fmt: skip
    web = data["hosts"][2]
    assert web["labels"] == {"env": "prod", "ünï": "cödé"}
    assert web["engine"]["kernel_version"] == "6.1.0-28-amd64"
    assert web["containers"][0]["ports"] == [
        {"private_port": 80, "type": "tcp", "ip": "0.0.0.0", "public_port": 8080}
    ]
    assert data["hosts"][1] | {"containers": None} == {
        "name": "never", "url": "tcp://127.0.0.4:2378", "labels": {"rack": "r0"}, "state": "down",
        "stale": False, "last_seen": None, "last_error": "dial tcp: refused", "engine": None, "containers": None,
    }  # fmt: skip


def test_yaml_parses_to_the_same_data_as_json(snapshot: Snapshot) -> None:
    as_json = json.loads(dumps(snapshot, "json"))
    as_yaml = yaml.safe_load(dumps(snapshot, "yaml"))
    assert as_yaml == as_json  # times stay strings: the dumper quotes them


def _flatten(data: dict[str, object]) -> list[dict[str, str]]:
    """What a CSV row should hold, derived from the JSON by hand."""

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return str(value)

    rows = []
    for h in data["hosts"]:  # type: ignore[attr-defined]
        engine = h["engine"] or {}
        host = {
            "snapshot_id": cell(data["id"]), "taken_at": cell(data["taken_at"]), "trigger": cell(data["trigger"]),
            "fleetd_version": cell(data["fleetd_version"]), "host": h["name"], "host_url": h["url"],
            "host_labels": cell(h["labels"]), "host_state": h["state"], "host_stale": cell(h["stale"]),
            "host_last_seen": cell(h["last_seen"]), "host_last_error": cell(h["last_error"]),
            "engine_id": cell(engine.get("engine_id")), "engine_name": cell(engine.get("name")),
            "server_version": cell(engine.get("server_version")), "api_version": cell(engine.get("api_version")),
            "operating_system": cell(engine.get("operating_system")), "os_type": cell(engine.get("os_type")),
            "kernel_version": cell(engine.get("kernel_version")), "architecture": cell(engine.get("architecture")),
            "ncpu": cell(engine.get("ncpu")), "mem_total": cell(engine.get("mem_total")),
            "storage_driver": cell(engine.get("storage_driver")),
            "engine_id_volatile": cell(engine.get("engine_id_volatile")) if engine else "",
        }  # fmt: skip
        empty = dict.fromkeys(CSV_COLUMNS[len(host) :], "")
        if not h["containers"]:
            rows.append(host | empty)
        for c in h["containers"]:
            row = host | {
                "container_id": c["id"], "container_name": c["name"], "container_names": cell(c["names"]),
                "image": c["image"], "image_id": c["image_id"], "command": c["command"], "state": c["state"],
                "status": c["status"], "health": c["health"], "created": cell(c["created"]),
                "labels": cell(c["labels"]), "ports": cell(c["ports"]),
            }  # fmt: skip
            rows.append(row)
    return rows


def test_csv_parses_to_one_row_per_container_plus_hosts_without_any(snapshot: Snapshot) -> None:
    text = dumps(snapshot, "csv").decode()
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    rows = list(reader)
    assert [(r["host"], r["container_name"]) for r in rows] == [
        ("empty", ""),
        ("never", ""),
        ("web", "nginx-1"),
        ("web", "job-1"),
    ]
    assert rows == _flatten(json.loads(dumps(snapshot, "json")))
    assert "\r\n" in text  # RFC 4180 line ends


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_into_the_same_record(snapshot: Snapshot, fmt: str) -> None:
    assert loads(dumps(snapshot, fmt), fmt) == snapshot  # type: ignore[arg-type]


def test_bad_input_is_reported_as_such() -> None:
    with pytest.raises(SnapshotFormatError, match="not a fleetd snapshot in JSON"):
        loads(b'{"id": "x"}', "json")
    with pytest.raises(SnapshotFormatError, match="missing columns"):
        loads(b"a,b\n1,2\n", "csv")
    with pytest.raises(SnapshotFormatError, match="no rows"):
        loads(",".join(CSV_COLUMNS).encode() + b"\r\n", "csv")
    with pytest.raises(SnapshotFormatError, match="YAML"):
        loads(b"- just\n- a list\n", "yaml")


def test_formats_are_recognised_by_name_then_content() -> None:
    assert format_from_name("x.YML") == "yaml" and format_from_name("x.txt") is None
    assert detect_format("snap.csv", b"{") == "csv"
    assert detect_format("snap", b'  {"id": 1}') == "json"
    assert detect_format("snap", b"snapshot_id,taken_at") == "csv"
    assert detect_format("snap", b"id: 1\n") == "yaml"


@pytest.mark.parametrize("hosts", [0, 1, 5])
def test_host_by_host_encoding_is_byte_for_byte_one_call(hosts: int) -> None:
    snap = build_snapshot(capture_fleet(fleet(hosts, 3), Trigger.SCHEDULE), snapshot_id=7)
    assert dumps(snap, "json") == msgspec.json.encode(snap)
    assert dumps(snap, "yaml") == msgspec.yaml.encode(snap)


def test_csv_cells_a_spreadsheet_would_run_are_neutralised_and_read_back() -> None:
    state = FleetState(clock=Clock())
    hostile = {"link": '=HYPERLINK("http://127.0.0.1/x","y")', "plus": "+1+2", "at": "@SUM(A1)"}
    add_host(
        state,
        "web",
        [
            container("web", "=cmd|' /C calc'!A0", labels=hostile),
            container("web", "-2+3", labels={"tab": "\tx", "cr": "\rx", "quoted": "'=already"}),
        ],
        index=1,
        labels={"env": "=1+1"},
    )
    snapshot = build_snapshot(capture_fleet(state, Trigger.SCHEDULE), snapshot_id=7)
    text = dumps(snapshot, "csv").decode()
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    risky = [c for c in cells if c and c[0] in "=+-@\t\r"]
    assert risky == []  # no cell starts with a formula character
    assert "'=cmd|' /C calc'!A0" in cells and "'-2+3" in cells
    assert loads(text.encode(), "csv") == snapshot  # the apostrophes come off again, exactly one each
