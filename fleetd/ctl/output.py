"""Terminal output: colour only on a TTY and never with NO_COLOR; tables that fit, truncated, never wrapped.

Tables are built from rich ``Text`` cells: widths are measured the way the terminal draws them (wide
characters count twice), shrinkable columns give way from the widest down, cut cells end in "…", and no
line carries trailing blanks. On a terminal tables fit its width; into a pipe or a file nothing is cut
unless ``COLUMNS`` says how wide to be, so ``fleetd ps | grep`` sees whole values.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

__all__ = ["Column", "Table", "colour_wanted", "make_console", "print_json", "stable_colour"]

GAP: Final = 3  # blanks between columns, as docker's tables have
MIN_WIDTH: Final = 5
#: Colours for host/container prefixes: readable on dark and light backgrounds, no red (errors).
PALETTE: Final = ("cyan", "green", "magenta", "blue", "yellow", "bright_cyan", "bright_green",
                  "bright_magenta", "bright_blue", "dark_orange")  # fmt: skip


def colour_wanted(stream: IO[str], env: dict[str, str] | None = None) -> bool:
    """https://no-color.org: NO_COLOR set and not empty disables colour; otherwise only on a TTY."""
    env = dict(os.environ) if env is None else env
    if env.get("NO_COLOR", ""):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def make_console(stream: IO[str] | None = None) -> Console:
    out = stream if stream is not None else sys.stdout
    colour = colour_wanted(out)
    terminal = bool(getattr(out, "isatty", None) and out.isatty())
    width: int | None = None
    if not terminal:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else 1_000_000
    return Console(
        file=out,
        width=width,
        color_system="auto" if colour else None,
        no_color=not colour,
        force_terminal=None if terminal else False,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
    )


def stable_colour(key: str) -> str:
    """The same colour for the same key in every run (FNV-1a, not Python's salted hash)."""
    h = 0x811C9DC5
    for byte in key.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return PALETTE[h % len(PALETTE)]


def print_json(data: Any, stream: IO[str] | None = None) -> None:
    """Stable JSON for scripts: sorted keys, two-space indent, one trailing newline."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    out.flush()


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    shrink: bool = True  # may be cut when the table is too wide (ids and host names are not)
    justify: str = "left"


@dataclass(slots=True)
class Table:
    columns: Sequence[Column]
    rows: list[list[Text]] = field(default_factory=list)

    def add(self, *cells: str | Text | None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} cells, got {len(cells)}")
        self.rows.append([c if isinstance(c, Text) else Text(c or "") for c in cells])

    def widths(self, limit: int | None) -> list[int]:
        widths = [
            max([cell_len(col.header)] + [cell_len(r[i].plain) for r in self.rows])
            for i, col in enumerate(self.columns)
        ]
        if limit is None:
            return widths
        budget = limit - GAP * (len(widths) - 1)
        while sum(widths) > budget:
            shrinkable = [
                i for i, col in enumerate(self.columns)
                if col.shrink and widths[i] > max(MIN_WIDTH, min(len(col.header), MIN_WIDTH))
            ]  # fmt: skip
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
        return widths

    def lines(self, limit: int | None, *, header: bool = True) -> list[Text]:
        widths = self.widths(limit)
        out: list[Text] = []
        rows: list[list[Text]] = []
        if header:
            rows.append([Text(col.header, style="bold") for col in self.columns])
        rows.extend(self.rows)
        for row in rows:
            line = Text()
            for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
                piece = cell.copy()
                if cell_len(piece.plain) > width:
                    piece.truncate(width, overflow="ellipsis")
                if i < len(widths) - 1:
                    pad = width - cell_len(piece.plain)
                    if self.columns[i].justify == "right":
                        line.append(" " * pad)
                        line.append_text(piece)
                    else:
                        line.append_text(piece)
                        line.append(" " * pad)
                    line.append(" " * GAP)
                else:
                    if self.columns[i].justify == "right":
                        line.append(" " * (width - cell_len(piece.plain)))
                    line.append_text(piece)
            line.rstrip()
            if limit is not None and cell_len(line.plain) > limit:
                line.truncate(limit, overflow="ellipsis")
            out.append(line)
        return out

    def render(self, console: Console, *, header: bool = True) -> None:
        limit = console.width if console.is_terminal or console.width < 1_000_000 else None
        for line in self.lines(limit, header=header):
            console.print(line, no_wrap=True, overflow="ellipsis", crop=True)
