"""Configuration problems: where (file, line, field) and what, collected rather than raised one by one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "Problem", "Problems"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file, e.g. ``config/fleetd.yaml:12: hosts[2].url: unsupported scheme``.

    ``line`` is 1-based; 0 when the problem concerns the file as a whole (missing, unreadable).
    ``field`` is a dotted path such as ``poll.timeout`` or ``hosts[3].tls.ca``; empty for problems that
    belong to no field (invalid YAML, empty file), in which case it is left out of ``str()``.
    """

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.file}:{self.line}: {self.field}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


class ConfigError(Exception):
    """Raised by :func:`fleetd.config.load_config` with every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class Problems:
    """Collects problems while the loader carries on reading, so one run reports them all."""

    def __init__(self) -> None:
        self._items: list[Problem] = []

    def add(self, file: str, line: int, field: str, message: str) -> None:
        self._items.append(Problem(file, line, field, message))

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def sorted(self, main_file: str) -> list[Problem]:
        """The main config file's problems first, then other files'; each in line order."""
        return sorted(self._items, key=lambda p: (p.file != main_file, p.file, p.line))
