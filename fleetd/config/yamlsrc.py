"""YAML loading that keeps a line number for every mapping key and value.

``yaml.compose`` gives nodes with marks; they are turned into small immutable records (:class:`Scalar`,
:class:`Seq`, :class:`Map`) so the validators can say ``file:line`` for anything they reject.
Problems found here (unreadable file, invalid YAML, duplicate keys) go to a :class:`Problems`.

Hostile files are bounded: only regular files are read (a FIFO or a device would hang or never
end), at most :data:`MAX_FILE_BYTES` of them; nesting deeper than :data:`MAX_DEPTH` and aliases
that expand past :data:`MAX_VALUES` values (a "billion laughs" bomb) are refused while composing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import yaml
from yaml.constructor import SafeConstructor

from fleetd.config.errors import Problems

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_VALUES",
    "Entry",
    "Map",
    "Node",
    "Scalar",
    "Seq",
    "join_field",
    "load_mapping",
    "read_regular_file",
]

_MERGE_TAG = "tag:yaml.org,2002:merge"
#: A config or inventory larger than this is refused (10,000 hosts take about 1.5 MB).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Mappings and lists nested deeper than this are refused (the settings need 4 levels).
MAX_DEPTH = 64
#: Values (scalars, mappings, lists) after expanding every alias; 10,000 hosts need ~100,000.
MAX_VALUES = 500_000
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_regular_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of *path*; OSError (with a strerror fit for the user) for anything but a regular
    file of at most *limit* bytes. Opened non-blocking, so a FIFO is refused instead of waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise OSError(0, f"{kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > limit:
                raise OSError(0, f"larger than {limit // (1024 * 1024)} MiB")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class _LimitReached(yaml.MarkedYAMLError):
    pass


class _Bounds:
    """PyYAML's safe composer, counting depth and alias-expanded values as it builds nodes."""

    _parser: Any  # the loader class whose scanner and parser read the stream
    anchors: dict[str, yaml.Node]

    def __init__(self, stream: str) -> None:
        self._parser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)  # type: ignore[arg-type]
        self._depth = 0
        self._values = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it expands to (nodes live in anchors)

    def _count(self, values: int, mark: Any) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            raise _LimitReached(
                problem=f"aliases expand to more than {MAX_VALUES:,} values (an alias bomb?); "
                "write the values out or use fewer aliases",
                problem_mark=mark,
            )

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[attr-defined]
        start: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            anchored = self.anchors.get(event.anchor or "")
            if anchored is not None:
                self._count(self._sizes.get(id(anchored), 1), start)
            return super().compose_node(parent, index)  # type: ignore[misc, no-any-return]
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitReached(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=start)
        before = self._values
        try:
            node: yaml.Node | None = super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._depth -= 1
        self._count(1, start)
        self._sizes[id(node)] = self._values - before
        return node


class _BoundedLoader(_Bounds, yaml.SafeLoader):
    _parser = yaml.SafeLoader


LOADER: type[_Bounds] = _BoundedLoader
if getattr(yaml, "__with_libyaml__", False):

    class _BoundedCLoader(_Bounds, yaml.composer.Composer, yaml.CSafeLoader):
        """libyaml's scanner and parser (C) under PyYAML's composer (Python), so the bounds hold
        alike: a 1,000-host inventory loads in 0.06 s of CPU instead of 0.19-0.24 s (measured)."""

        _parser = yaml.CSafeLoader

    LOADER = _BoundedCLoader


@dataclass(frozen=True, slots=True)
class Scalar:
    value: object  # as YAML resolves it: str, int, float, bool, None (or a date, bytes...)
    text: str  # as written in the file
    line: int


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    key_line: int
    value: Node


@dataclass(frozen=True, slots=True)
class Map:
    entries: Mapping[str, Entry]
    line: int


Node: TypeAlias = Scalar | Seq | Map


def join_field(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def load_mapping(
    path: Path,
    display: str,
    problems: Problems,
    *,
    what: str,
    read_error_at: tuple[str, int, str] | None = None,
) -> Map | None:
    """Read *path* and return its top-level mapping, or None after reporting why there is none.

    *display* is how the file is named in problems; *what* names it in messages ("config file").
    A file that cannot be read is reported at *read_error_at* (file, line, field) when given: the
    place that referred to it.
    """
    try:
        data = read_regular_file(path)
    except OSError as exc:
        if read_error_at is None:
            problems.add(display, 0, "", f"cannot read {what}: {exc.strerror or exc}")
        else:
            problems.add(*read_error_at, f"cannot read {what} {display}: {exc.strerror or exc}")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.add(display, line, "", f"{what} is not valid UTF-8")
        return None
    try:
        root = yaml.compose(text, Loader=LOADER)  # type: ignore[arg-type]
    except _LimitReached as exc:
        mark = exc.problem_mark
        problems.add(display, mark.line + 1 if mark is not None else 0, "", f"{what} refused: {exc.problem}")
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        if exc.problem and "maximum nesting depth" in exc.problem:  # libyaml's own bound, met first
            problems.add(display, line, "", f"{what} refused: nested more than {MAX_DEPTH} levels deep")
            return None
        if exc.context == "expected a single document in the stream":
            detail = "only one YAML document is allowed; a second one starts here"
        else:
            detail = exc.problem or exc.context or "syntax error"
            if exc.context and exc.problem and exc.context_mark is not None:
                detail += f" ({exc.context} at line {exc.context_mark.line + 1})"
        problems.add(display, line, "", f"invalid YAML: {detail}")
        return None
    except yaml.YAMLError as exc:
        problems.add(display, 0, "", f"invalid YAML: {exc}")
        return None
    if root is None:
        problems.add(display, 1, "", f"{what} is empty; expected a mapping of settings")
        return None
    node = _Converter(display, problems).convert(root, "")
    if not isinstance(node, Map):
        kind = "a list" if isinstance(node, Seq) else "a single value"
        problems.add(display, node.line, "", f"{what} must be a mapping of settings at the top, not {kind}")
        return None
    return node


class _Converter:
    def __init__(self, file: str, problems: Problems) -> None:
        self._file = file
        self._problems = problems
        self._constructor = SafeConstructor()
        self._open: set[int] = set()  # collection nodes being converted: an alias back to one is a cycle

    def convert(self, node: yaml.Node, field: str) -> Node:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, field, line)
        if id(node) in self._open:
            self._problems.add(self._file, line, field, "recursive YAML alias")
            return Scalar(None, "", line)
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return Seq(tuple(self.convert(n, f"{field}[{i}]") for i, n in enumerate(node.value)), line)
            assert isinstance(node, yaml.MappingNode)
            return Map(self._entries(node, field), line)
        finally:
            self._open.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, field: str, line: int) -> Scalar:
        try:
            value: object = self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self._problems.add(self._file, line, field, f"invalid value: {problem}")
            value = node.value
        return Scalar(value, str(node.value), line)

    def _entries(self, node: yaml.MappingNode, field: str) -> dict[str, Entry]:
        entries: dict[str, Entry] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problems.add(self._file, key_line, field, "mapping keys must be plain strings")
                continue
            key = str(key_node.value)
            first = entries.get(key)
            if first is not None:
                self._problems.add(
                    self._file,
                    key_line,
                    join_field(field, key),
                    f"duplicate key '{key}' (first given at line {first.key_line})",
                )
                continue
            entries[key] = Entry(key, key_line, self.convert(value_node, join_field(field, key)))
        # YAML merge keys ("<<: *defaults"): keys given explicitly win, then earlier merged mappings.
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                merged = self.convert(source, field)
                if not isinstance(merged, Map):
                    self._problems.add(
                        self._file, merged.line, field, "'<<' needs a mapping or a list of mappings"
                    )
                    continue
                for key, entry in merged.entries.items():
                    entries.setdefault(key, entry)
        return entries
