"""A snapshot diff as a table for people (``fleetd diff`` without ``--json``)::

    snapshot 41 (2025-11-30T10:00:00Z) → 42 (2025-11-30T10:05:00Z)
    HOST  CONTAINER  CHANGE   FIELD  OLD                  NEW
    d1    web1       changed  state  running              exited
    d1    db1        removed         postgres:16 running
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from fleetd.snapshot.diff import DiffSide, SnapshotDiff

__all__ = ["diff_rows", "format_diff"]

HEADER: Final = ("HOST", "CONTAINER", "CHANGE", "FIELD", "OLD", "NEW")
WIDTH: Final = 40  # longest cell; longer values are cut with "…" (the JSON output has them whole)
_LONG_ID: Final = re.compile(r"^(sha256:)?([0-9a-f]{12})[0-9a-f]{52}$")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = str(value)
    else:
        text = msgspec.json.encode(value).decode()
    m = _LONG_ID.match(text)
    if m:
        text = (m.group(1) or "") + m.group(2)
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def diff_rows(diff: SnapshotDiff) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for h in diff.hosts_added:
        rows.append((h.name, "", "host added", "", "", f"{h.state}, {h.containers} containers"))
    for h in diff.hosts_removed:
        rows.append((h.name, "", "host removed", "", f"{h.state}, {h.containers} containers", ""))
    for hc in diff.hosts_changed:
        for ch in hc.changes:
            rows.append((hc.name, "", "host changed", ch.field, _cell(ch.old), _cell(ch.new)))
    for host in diff.containers:
        for c in host.added:
            rows.append((host.host, c.name, "added", "", "", f"{_cell(c.image)} {c.state}"))
        for c in host.removed:
            rows.append((host.host, c.name, "removed", "", f"{_cell(c.image)} {c.state}", ""))
        for cc in host.changed:
            for ch in cc.changes:
                rows.append((host.host, cc.name, "changed", ch.field, _cell(ch.old), _cell(ch.new)))
    return rows


def _side(side: DiffSide) -> str:
    return f"{side.id} ({side.taken_at})" if side.id is not None else side.taken_at


def format_diff(diff: SnapshotDiff) -> str:
    title = f"snapshot {_side(diff.old)} → {_side(diff.new)}"
    rows = diff_rows(diff)
    if not rows:
        return f"{title}\nno changes\n"
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [title]
    for row in [HEADER, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"
