"""The registry store on SQLite: one file in the registry's state directory.

WAL journal so readers never block the writer, `synchronous=FULL` because a
registry change must survive a power cut once it has been acknowledged,
foreign keys on. Writes take the database lock up front (`BEGIN IMMEDIATE`), so
a check-then-insert inside one change cannot race another writer.

It must never be opened by two registries that do not share this file's lock
(a network file system).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from govbus.errors import ConfigInvalid
from registry.store import SqlRegistryStore

__all__ = ["SqliteRegistryStore"]


class SqliteRegistryStore(SqlRegistryStore):
    BLOB = "BLOB"
    SERIAL = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigInvalid(f"cannot open the registry database {path}: {exc}") from None
        self._create_schema()

    def sql(self, statement: str) -> str:
        return statement

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Cursor]:
        cursor = self._conn.cursor()
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield cursor
        except BaseException:
            self._conn.rollback()
            raise
        else:
            self._conn.commit()
        finally:
            cursor.close()

    def _is_integrity_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def _is_database_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
