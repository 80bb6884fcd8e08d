"""Reading one YAML mapping against a fixed set of keys, reporting every problem with file:line: field.

A getter returns None when the key is absent (or null) *or* its value was rejected; rejected keys are
remembered in :attr:`Section.invalid` so cross-field checks can skip values that were never valid.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from fleetd.config.durations import format_duration, parse_duration
from fleetd.config.errors import Problems
from fleetd.config.yamlsrc import Map, Node, Scalar, Seq, join_field

__all__ = ["Section", "absolute", "describe", "readable_problem", "suggest"]

T = TypeVar("T")


def absolute(path: Path, base: Path) -> Path:
    """*path* made absolute against *base*, with ``..`` folded but symlinks left alone."""
    return Path(os.path.abspath(base / path))


def readable_problem(path: Path) -> str | None:
    """None if *path* is a regular file that can be opened for reading, else why not.

    Non-blocking, so that a FIFO given by mistake is reported instead of hanging the loader.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return f"cannot read {path}: not a regular file"
    finally:
        os.close(fd)
    return None


def suggest(word: str, options: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of *options*, or an empty string."""
    close = difflib.get_close_matches(word.lower(), options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def describe(node: Node, *, secret: bool = False) -> str:
    """What a value is, for "expected X, got Y" messages; *secret* leaves the value itself out."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    value = node.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    else:
        kind = f"a {type(value).__name__}"
    if secret:
        return kind
    shown = node.text if len(node.text) <= 60 else node.text[:57] + "..."
    return f"{kind} '{shown}'" if isinstance(value, str) else f"{kind} ({shown})"


class Section:
    """One YAML mapping read against *allowed* keys; unknown keys are reported on construction."""

    def __init__(
        self,
        node: Map,
        *,
        file: str,
        field: str,
        allowed: Sequence[str],
        problems: Problems,
        secret: bool = False,
    ) -> None:
        self.node = node
        self.file = file
        self.field = field
        self.problems = problems
        self.secret = secret
        self.invalid: set[str] = set()
        for key, entry in node.entries.items():
            if key not in allowed:
                hint = suggest(key, allowed)
                problems.add(
                    file,
                    entry.key_line,
                    join_field(field, key),
                    f"unknown key '{key}'{hint} (allowed keys: {', '.join(allowed)})",
                )

    @classmethod
    def of(
        cls,
        node: Node,
        *,
        file: str,
        field: str,
        allowed: Sequence[str],
        problems: Problems,
        secret: bool = False,
    ) -> Section | None:
        """A Section for *node*, or None after reporting that it is not a mapping."""
        if isinstance(node, Map):
            return cls(node, file=file, field=field, allowed=allowed, problems=problems, secret=secret)
        problems.add(file, node.line, field, f"expected a mapping, got {describe(node, secret=secret)}")
        return None

    # -- locating ---------------------------------------------------------------------------------

    @property
    def line(self) -> int:
        return self.node.line

    def sub(self, key: str) -> str:
        return join_field(self.field, key)

    def get(self, key: str) -> Node | None:
        """The value node, or None when the key is absent or null (null means "use the default")."""
        entry = self.node.entries.get(key)
        if entry is None or (isinstance(entry.value, Scalar) and entry.value.value is None):
            return None
        return entry.value

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def value_line(self, key: str) -> int:
        entry = self.node.entries.get(key)
        return entry.value.line if entry is not None else self.node.line

    def key_line(self, key: str) -> int:
        entry = self.node.entries.get(key)
        return entry.key_line if entry is not None else self.node.line

    def problem(self, key: str, message: str) -> None:
        self.invalid.add(key)
        self.problems.add(self.file, self.value_line(key), self.sub(key), message)

    def _fetch(self, key: str, required: bool) -> Node | None:
        node = self.get(key)
        if node is None and required:
            self.invalid.add(key)
            self.problems.add(self.file, self.node.line, self.sub(key), f"missing required key '{key}'")
        return node

    def _wrong_type(self, key: str, node: Node, expected: str) -> None:
        self.problem(key, f"expected {expected}, got {describe(node, secret=self.secret)}")

    # -- typed getters ----------------------------------------------------------------------------

    def section(self, key: str, allowed: Sequence[str], *, secret: bool = False) -> Section | None:
        node = self.get(key)
        if node is None:
            return None
        sec = Section.of(
            node, file=self.file, field=self.sub(key), allowed=allowed, problems=self.problems, secret=secret
        )
        if sec is None:
            self.invalid.add(key)
        return sec

    def sequence(self, key: str) -> tuple[Node, ...]:
        node = self.get(key)
        if node is None:
            return ()
        if not isinstance(node, Seq):
            self._wrong_type(key, node, "a list")
            return ()
        return node.items

    def text(self, key: str, *, required: bool = False, coerce: bool = False) -> str | None:
        """A string; with *coerce*, numbers and booleans are taken as written (``01`` stays "01")."""
        node = self._fetch(key, required)
        if node is None:
            return None
        if isinstance(node, Scalar):
            if isinstance(node.value, str):
                return node.value
            if coerce and isinstance(node.value, int | float | bool):
                return node.text
        self._wrong_type(key, node, "a string")
        return None

    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
        node = self.get(key)
        if node is None:
            return None
        if not isinstance(node, Scalar) or not isinstance(node.value, int) or isinstance(node.value, bool):
            self._wrong_type(key, node, "an integer")
            return None
        value = node.value
        if minimum is not None and value < minimum:
            self.problem(key, f"must be at least {minimum}, got {value}")
            return None
        if maximum is not None and value > maximum:
            self.problem(key, f"must be at most {maximum}, got {value}")
            return None
        return value

    def number(self, key: str, *, minimum: float, maximum: float) -> float | None:
        node = self.get(key)
        if node is None:
            return None
        if (
            not isinstance(node, Scalar)
            or not isinstance(node.value, int | float)
            or isinstance(node.value, bool)
        ):
            self._wrong_type(key, node, "a number")
            return None
        value = float(node.value)
        if not minimum <= value <= maximum:
            self.problem(key, f"must be between {minimum:g} and {maximum:g}, got {node.text}")
            return None
        return value

    def boolean(self, key: str) -> bool | None:
        node = self.get(key)
        if node is None:
            return None
        if not isinstance(node, Scalar) or not isinstance(node.value, bool):
            self._wrong_type(key, node, "true or false")
            return None
        return node.value

    def duration(
        self,
        key: str,
        *,
        allow_zero: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        """A duration in seconds; outside [*minimum*, *maximum*] it is reported with both named."""
        node = self.get(key)
        if node is None:
            return None
        if not isinstance(node, Scalar):
            self._wrong_type(key, node, "a duration such as '15s'")
            return None
        try:
            seconds = parse_duration(node.value, allow_zero=allow_zero)
        except ValueError as exc:
            self.problem(key, str(exc))
            return None
        if minimum is not None and seconds < minimum:
            self.problem(key, f"must be at least {format_duration(minimum)}, got {node.text}")
            return None
        if maximum is not None and seconds > maximum:
            self.problem(key, f"must be at most {format_duration(maximum)}, got {node.text}")
            return None
        return seconds

    def choice(self, key: str, options: Mapping[str, T], *, required: bool = False) -> T | None:
        """One of *options* (matched case-insensitively), mapped to its typed value."""
        text = self.text(key, required=required)
        if text is None:
            return None
        value = options.get(text.strip().lower())
        if value is None:
            names = list(options)
            self.problem(key, f"'{text}' is not one of {', '.join(names)}{suggest(text, names)}")
        return value

    def path(self, key: str, base: Path, *, required: bool = False) -> Path | None:
        """A path; a relative one is taken relative to *base*."""
        text = self.text(key, required=required)
        if text is None:
            return None
        if not text.strip():
            self.problem(key, "expected a path, got an empty string")
            return None
        return absolute(Path(text), base)

    def readable_file(self, key: str, base: Path, *, required: bool = False) -> Path | None:
        """A path to a file that exists and can be opened for reading now."""
        path = self.path(key, base, required=required)
        if path is None:
            return None
        why = readable_problem(path)
        if why is not None:
            self.problem(key, why)
            return None
        return path
