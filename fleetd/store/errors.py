"""Errors of fleetd's database.

    StoreError                 anything that makes the database unusable or an operation fail
    ├── NotFleetdDatabase      the file is not SQLite, or another program's database
    ├── SchemaTooNew           written by a newer fleetd: this one refuses to touch it
    ├── SchemaTooOld           opened read-only but not yet migrated (start fleetd once)
    └── StoreClosed            used before open() or after aclose()
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NotFleetdDatabase", "SchemaTooNew", "SchemaTooOld", "StoreClosed", "StoreError"]


class StoreError(Exception):
    """The message names the file and says what to do."""


class NotFleetdDatabase(StoreError):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"{path}: not a fleetd database ({why}); point snapshots.path at another file "
            "or move this one away"
        )
        self.path = path


class SchemaTooNew(StoreError):
    def __init__(self, path: Path, found: int, known: int) -> None:
        super().__init__(
            f"{path}: database schema version {found} was written by a newer fleetd; this one knows "
            f"versions up to {known}. Upgrade fleetd, or point snapshots.path at another file"
        )
        self.path = path
        self.found = found
        self.known = known


class SchemaTooOld(StoreError):
    def __init__(self, path: Path, found: int, known: int) -> None:
        super().__init__(
            f"{path}: database schema version {found} is older than this fleetd's ({known}); "
            "start `fleetd run` once to migrate it"
        )
        self.path = path
        self.found = found
        self.known = known


class StoreClosed(StoreError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: the database is not open")
        self.path = path
