"""fleetd's embedded database (SQLite): the snapshot history and the audit log, each in its own tables.

:class:`Database` owns the file and its threads (see :mod:`fleetd.store.db`); :class:`SnapshotStore`
keeps snapshots in it (:mod:`fleetd.store.snapshots`).
"""

from __future__ import annotations

from fleetd.store.db import Database, read_transaction, transaction
from fleetd.store.errors import (
    NotFleetdDatabase,
    SchemaTooNew,
    SchemaTooOld,
    StoreClosed,
    StoreError,
    StoreFailed,
    StoreInterrupted,
    StoreReplaced,
)
from fleetd.store.retention import PruneResult, RetentionPolicy
from fleetd.store.schema import APPLICATION_ID, MIGRATIONS
from fleetd.store.snapshots import ListQuery, SnapshotPage, SnapshotStore

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "Database",
    "ListQuery",
    "NotFleetdDatabase",
    "PruneResult",
    "RetentionPolicy",
    "SchemaTooNew",
    "SchemaTooOld",
    "SnapshotPage",
    "SnapshotStore",
    "StoreClosed",
    "StoreError",
    "StoreFailed",
    "StoreInterrupted",
    "StoreReplaced",
    "read_transaction",
    "transaction",
]
