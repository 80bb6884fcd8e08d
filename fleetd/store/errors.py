"""Errors of fleetd's database.

    StoreError                 anything that makes the database unusable or an operation fail
    ├── NotFleetdDatabase      the file is not SQLite, or another program's database
    ├── SchemaTooNew           written by a newer fleetd: this one refuses to touch it
    ├── SchemaTooOld           opened read-only but not yet migrated (start fleetd once)
    ├── StoreClosed            used before open() or after aclose()
    ├── StoreReplaced          the file was deleted or replaced while open: writes are refused
    ├── StoreInterrupted       the running write was interrupted (shutdown): rolled back
    └── StoreFailed            SQLite failed (locked, full, corrupt, read-only): ``cause`` is its error

No ``sqlite3.Error`` leaves the store: every one is one of these, with the file named.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "NotFleetdDatabase",
    "SchemaTooNew",
    "SchemaTooOld",
    "StoreClosed",
    "StoreError",
    "StoreFailed",
    "StoreInterrupted",
    "StoreReplaced",
]


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


class StoreReplaced(StoreError):
    """Writing on would go to a file nobody can open again (deleted) or beside a stranger's (renamed)."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(
            f"{path}: the database file was {what} while fleetd was running; nothing more is written "
            "(snapshots and audit entries are refused) until fleetd is restarted, which opens what is "
            "at that path then (restore the file first if it was removed by mistake)"
        )
        self.path = path
        self.what = what


class StoreFailed(StoreError):
    """An operation failed inside SQLite; the transaction it was in was rolled back."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


class StoreInterrupted(StoreFailed):
    """The write was interrupted (fleetd is stopping): it was rolled back, nothing of it is stored."""
