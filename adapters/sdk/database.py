"""SQLite for agency stores: one file per adapter, WAL when serving, fast bulk loads.

- `open_database(path, schema_version)` opens a store for serving: WAL, synchronous
  FULL (a registered birth survives a power cut), foreign keys on, and refuses a file
  that is missing or of another schema with `CONFIG_INVALID`.
- `bulk_load(path, tables, indexes, schema_version)` builds a store from scratch: it
  writes into a temporary file with journalling and syncing off and one big
  transaction, creates the indexes after the rows (much faster), switches the file
  to WAL and renames it into place, so a crashed load never leaves half a store.
- `take_number(conn, key, first=…)` hands out the next number of a named sequence
  (registration numbers, record ids) inside the caller's write transaction.

Agency stores run their queries inline on the event loop: they are indexed point
lookups on a local file that take microseconds, cheaper than a thread hop.
This module must never open a database in another directory than the one given.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from govbus.errors import ConfigInvalid, FailedPrecondition

__all__ = ["bulk_load", "open_database", "take_number"]

_SEQUENCE_KEYS = frozenset({"kind", "name", "year"})


def open_database(path: Path, schema_version: int, *, readonly: bool = False) -> sqlite3.Connection:
    """Open an existing store for serving (see the module docstring)."""
    if not path.is_file():
        raise ConfigInvalid(
            f"store {path} does not exist: create it with `govbus adapter populate`"
        )
    uri = f"file:{path}?mode={'ro' if readonly else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ConfigInvalid(f"store {path} is not a usable SQLite database: {exc}") from None
    if version != schema_version:
        conn.close()
        raise ConfigInvalid(
            f"store {path} has schema version {version}, this adapter needs {schema_version}: "
            "populate it again"
        )
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA cache_size=-32000")
    return conn


@contextlib.contextmanager
def bulk_load(
    path: Path, *, tables: str, indexes: str = "", schema_version: int
) -> Iterator[sqlite3.Connection]:
    """Create a fresh store at `path`; the `with` body inserts the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.loading")
    for leftover in (tmp, Path(f"{tmp}-journal")):
        leftover.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA cache_size=-200000")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.executescript(tables)
        conn.execute("BEGIN")
        yield conn
        conn.execute("COMMIT")
        if indexes:
            conn.executescript(indexes)
        conn.execute("ANALYZE")
        conn.execute(f"PRAGMA user_version={int(schema_version)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    os.replace(tmp, path)
    for side in (Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        side.unlink(missing_ok=True)


def take_number(
    conn: sqlite3.Connection,
    key: str | int,
    *,
    first: int,
    limit: int | None = None,
    what: str = "number",
    column: str = "kind",
) -> int:
    """The next number of sequence `key` in the store's `sequence (<column>, next)` table,
    starting at `first`. Call it inside the write transaction (`BEGIN IMMEDIATE`) that
    uses the number, so two writers never get the same one. With `limit`, a series that
    has reached it is refused with FAILED_PRECONDITION ("every <what> of the series")."""
    if column not in _SEQUENCE_KEYS:  # the only name put into the SQL below
        raise ValueError(f"sequence key column {column!r}")
    select = f"SELECT next FROM sequence WHERE {column} = ?"  # noqa: S608 - column checked
    row = conn.execute(select, (key,)).fetchone()
    number = first if row is None else int(row[0])
    if limit is not None and number >= limit:
        raise FailedPrecondition(f"every {what} of the series is used")
    upsert = f"INSERT INTO sequence VALUES (?, ?) ON CONFLICT ({column}) DO UPDATE SET next = ?"  # noqa: S608
    conn.execute(upsert, (key, number + 1, number + 1))
    return number
