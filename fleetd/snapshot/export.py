"""Snapshots as JSON, YAML or CSV, and back.

JSON and YAML carry the :class:`Snapshot` record as it is. CSV has one row per container with its
host's columns repeated (labels, names and ports as JSON in their cells), plus one row for each host
without containers, so no host disappears from an export; every row also names its snapshot. All three
read back into the same record (``loads``), which is what ``fleetd diff`` does with files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, get_args

import msgspec

from fleetd.fleet.records import EngineFacts, HostStatus, PortRecord
from fleetd.snapshot.model import (
    Snapshot,
    SnapshotContainer,
    SnapshotHost,
    Trigger,
    count_hosts,
    yield_gil,
)

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "MEDIA_TYPES",
    "Format",
    "SnapshotFormatError",
    "csv_rows",
    "detect_format",
    "dumps",
    "format_from_name",
    "loads",
    "neutralise",
    "restore",
]

Format = Literal["json", "yaml", "csv"]
FORMATS: Final[tuple[Format, ...]] = get_args(Format)
#: (content type, charset) per format, for HTTP answers.
MEDIA_TYPES: Final[dict[Format, tuple[str, str | None]]] = {
    "json": ("application/json", None),
    "yaml": ("application/yaml", "utf-8"),
    "csv": ("text/csv", "utf-8"),
}

_SNAPSHOT_COLUMNS: Final = ("snapshot_id", "taken_at", "trigger", "fleetd_version")
_HOST_COLUMNS: Final = (
    "host",
    "host_url",
    "host_labels",
    "host_state",
    "host_stale",
    "host_last_seen",
    "host_last_error",
)
# column → EngineFacts field
_ENGINE_COLUMNS: Final = (
    ("engine_id", "engine_id"),
    ("engine_name", "name"),
    ("server_version", "server_version"),
    ("api_version", "api_version"),
    ("operating_system", "operating_system"),
    ("os_type", "os_type"),
    ("kernel_version", "kernel_version"),
    ("architecture", "architecture"),
    ("ncpu", "ncpu"),
    ("mem_total", "mem_total"),
    ("storage_driver", "storage_driver"),
    ("engine_id_volatile", "engine_id_volatile"),
)
#: Columns added after the first release: a CSV without them still reads (with their defaults).
_OPTIONAL_COLUMNS: Final = frozenset({"engine_id_volatile"})
_CONTAINER_COLUMNS: Final = (
    "container_id",
    "container_name",
    "container_names",
    "image",
    "image_id",
    "command",
    "state",
    "status",
    "health",
    "created",
    "labels",
    "ports",
)
CSV_COLUMNS: Final = (*_SNAPSHOT_COLUMNS, *_HOST_COLUMNS, *(c for c, _ in _ENGINE_COLUMNS), *_CONTAINER_COLUMNS)
_INT_ENGINE_FIELDS: Final = frozenset({"ncpu", "mem_total"})

_EXTENSIONS: Final[tuple[tuple[str, Format], ...]] = (
    (".json", "json"),
    (".yaml", "yaml"),
    (".yml", "yaml"),
    (".csv", "csv"),
)

_json = msgspec.json.Encoder()
_compact_json = msgspec.json.Encoder(order="sorted")


class SnapshotFormatError(ValueError):
    """The data is not a snapshot in the format it was read as."""


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): such cells are written with a
# leading apostrophe, which spreadsheets show as text; reading strips exactly one, so values round-trip.
_FORMULA_START = frozenset("=+-@\t\r")


def neutralise(cell: str) -> str:
    return "'" + cell if cell.lstrip("'")[:1] in _FORMULA_START else cell


def restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell.lstrip("'")[:1] in _FORMULA_START else cell


def _jcell(value: Any) -> str:
    return _compact_json.encode(value).decode()


def _opt(value: str | None) -> str:
    return "" if value is None else value


def _engine_cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _host_cells(snapshot: Snapshot, h: SnapshotHost) -> list[str]:
    engine = h.engine
    return [
        "" if snapshot.id is None else str(snapshot.id),
        snapshot.taken_at,
        snapshot.trigger.value,
        snapshot.fleetd_version,
        h.name,
        h.url,
        _jcell(h.labels),
        h.state.value,
        "true" if h.stale else "false",
        _opt(h.last_seen),
        _opt(h.last_error),
        *("" if engine is None else _engine_cell(getattr(engine, f)) for _, f in _ENGINE_COLUMNS),
    ]


def csv_rows(snapshot: Snapshot) -> Iterable[list[str]]:
    yield list(CSV_COLUMNS)
    for h in snapshot.hosts:
        yield_gil()
        host = _host_cells(snapshot, h)
        if not h.containers:
            yield host + [""] * len(_CONTAINER_COLUMNS)
        for c in h.containers:
            yield [
                *host,
                c.id,
                c.name,
                _jcell(c.names),
                c.image,
                c.image_id,
                c.command,
                c.state,
                c.status,
                c.health,
                _opt(c.created),
                _jcell(c.labels),
                _jcell(c.ports),
            ]


def _without_hosts(snapshot: Snapshot, encode: Callable[[Any], bytes], empty: bytes) -> bytes:
    """The document up to its host list (``hosts`` is the record's last field)."""
    head = encode(msgspec.structs.replace(snapshot, hosts=()))
    if not head.endswith(empty):
        raise AssertionError(f"unexpected encoding of an empty host list: {head[-40:]!r}")
    return head[: -len(empty)]


def _json_chunked(snapshot: Snapshot) -> bytes:
    """Host by host, yielding the GIL in between: byte for byte what one ``encode`` call gives."""
    if not snapshot.hosts:
        return _json.encode(snapshot)
    parts = [_without_hosts(snapshot, _json.encode, b"[]}"), b"["]
    for i, host in enumerate(snapshot.hosts):
        parts.append(b"," + _json.encode(host) if i else _json.encode(host))
        yield_gil()
    parts.append(b"]}")
    return b"".join(parts)


def _yaml_chunked(snapshot: Snapshot) -> bytes:
    """As :func:`_json_chunked`; PyYAML writes ``hosts`` as an indentless block sequence."""
    if not snapshot.hosts:
        return msgspec.yaml.encode(snapshot)
    parts = [_without_hosts(snapshot, msgspec.yaml.encode, b" []\n"), b"\n"]
    for host in snapshot.hosts:
        parts.append(msgspec.yaml.encode([host]))  # PyYAML's C dumper when available
        yield_gil()
    return b"".join(parts)


def dumps(snapshot: Snapshot, fmt: Format) -> bytes:
    """The snapshot in ``fmt``; meant for a worker thread, it lets the event loop run between hosts."""
    if fmt == "json":
        return _json_chunked(snapshot)
    if fmt == "yaml":
        return _yaml_chunked(snapshot)
    buf = io.StringIO()
    writer = csv.writer(buf)  # RFC 4180: CRLF line ends, quoted as needed
    writer.writerows([neutralise(cell) for cell in row] for row in csv_rows(snapshot))
    return buf.getvalue().encode()


def _none(cell: str) -> str | None:
    return cell or None


def _host_from_row(row: dict[str, str]) -> SnapshotHost:
    engine = None
    if row["ncpu"] != "":  # every engine has a CPU count; an empty cell means no facts
        values: dict[str, Any] = {
            f: (int(row[col]) if f in _INT_ENGINE_FIELDS else row[col])
            for col, f in _ENGINE_COLUMNS
            if col not in _OPTIONAL_COLUMNS
        }
        values["engine_id_volatile"] = row.get("engine_id_volatile") == "true"
        engine = EngineFacts(**values)
    return SnapshotHost(
        name=row["host"],
        url=row["host_url"],
        labels=msgspec.json.decode(row["host_labels"], type=dict[str, str]),
        state=HostStatus(row["host_state"]),
        stale=row["host_stale"] == "true",
        last_seen=_none(row["host_last_seen"]),
        last_error=_none(row["host_last_error"]),
        engine=engine,
        containers=(),
    )


def _container_from_row(row: dict[str, str]) -> SnapshotContainer:
    return SnapshotContainer(
        id=row["container_id"],
        name=row["container_name"],
        names=msgspec.json.decode(row["container_names"], type=list[str]),
        image=row["image"],
        image_id=row["image_id"],
        command=row["command"],
        state=row["state"],
        status=row["status"],
        health=row["health"],
        created=_none(row["created"]),
        labels=msgspec.json.decode(row["labels"], type=dict[str, str]),
        ports=msgspec.json.decode(row["ports"], type=list[PortRecord]),
    )


def _loads_csv(text: str) -> Snapshot:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ()) and c not in _OPTIONAL_COLUMNS]
    if missing:
        raise SnapshotFormatError(f"not a fleetd snapshot CSV: missing columns {', '.join(missing)}")
    hosts: dict[str, tuple[SnapshotHost, list[SnapshotContainer]]] = {}
    first: dict[str, str] | None = None
    for raw in reader:
        row = {k: restore(v) for k, v in raw.items()}
        first = first or row
        if row["host"] not in hosts:
            hosts[row["host"]] = (_host_from_row(row), [])
        if row["container_id"]:
            hosts[row["host"]][1].append(_container_from_row(row))
    if first is None:
        raise SnapshotFormatError("the CSV has a header but no rows")
    built = tuple(msgspec.structs.replace(h, containers=tuple(cs)) for h, cs in hosts.values())
    return Snapshot(
        id=int(first["snapshot_id"]) if first["snapshot_id"] else None,
        taken_at=first["taken_at"],
        trigger=Trigger(first["trigger"]),
        fleetd_version=first["fleetd_version"],
        counts=count_hosts(built),
        hosts=built,
    )


def loads(data: bytes, fmt: Format) -> Snapshot:
    """Raises :class:`SnapshotFormatError` with what is wrong."""
    try:
        if fmt == "json":
            return msgspec.json.decode(data, type=Snapshot)
        if fmt == "yaml":
            return msgspec.yaml.decode(data, type=Snapshot)
        return _loads_csv(data.decode("utf-8-sig"))
    except SnapshotFormatError:
        raise
    except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotFormatError(f"not a fleetd snapshot in {fmt.upper()}: {exc}") from None


def format_from_name(name: str) -> Format | None:
    """``.json``, ``.yaml``/``.yml`` or ``.csv``; None for anything else."""
    lower = name.lower()
    for ext, fmt in _EXTENSIONS:
        if lower.endswith(ext):
            return fmt
    return None


def detect_format(name: str, data: bytes) -> Format:
    """By file extension, else by the first bytes."""
    by_name = format_from_name(name)
    if by_name is not None:
        return by_name
    head = data.lstrip()[:64]
    if head.startswith(b"{"):
        return "json"
    if head.startswith(b"\xef\xbb\xbf") or head.startswith(b"snapshot_id,"):
        return "csv"
    return "yaml"
