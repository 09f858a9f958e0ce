"""The embedded audit store: one SQLite file in WAL mode with synchronous=FULL.

Every `append` is one `BEGIN IMMEDIATE … COMMIT`, which in WAL mode with
synchronous=FULL returns only after the write-ahead log is on disk: a record
acknowledged is a record that survives a crash or power loss. Readers use their
own connection and see committed data only.

Triggers refuse UPDATE and DELETE on every append-only table; the tree head is
the one row that changes, and only forward from the size the writer expects.
Any SQLite error is reported as `AuditLogUnavailable` (the disk, the file) or
`AuditLogCorrupt` (a damaged file), never as a raw exception. The queries are
shared with PostgreSQL (`audit_log.store_sql`); this module opens the file,
creates the schema and supplies the SQLite-only parts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from audit_log.store import LeafRow
from audit_log.store_sql import SqlLogStore
from govbus.errors import AuditLogCorrupt, AuditLogUnavailable, ConfigInvalid, GovbusError

__all__ = ["SqliteStore", "immediate_transaction"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    idx INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    record BLOB NOT NULL,
    request_id TEXT NOT NULL,
    subject BLOB,
    logged_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_request ON records (request_id);
CREATE INDEX IF NOT EXISTS records_by_subject ON records (subject, logged_at_ms)
    WHERE subject IS NOT NULL;
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    size INTEGER NOT NULL, root BLOB NOT NULL, frontier BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cosignatures (
    size INTEGER NOT NULL, witness TEXT NOT NULL, line TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL, PRIMARY KEY (size, witness, line)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS certificates (sha256 BLOB PRIMARY KEY, der BLOB NOT NULL)
    WITHOUT ROWID;
"""

_APPEND_ONLY = ("records", "nodes", "checkpoints", "cosignatures", "certificates")


def _triggers() -> str:
    out = []
    for table in _APPEND_ONLY:
        for op in ("UPDATE", "DELETE"):
            out.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'audit table {table} is append-only'); END;"
            )
    return "\n".join(out)


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """A cursor inside `BEGIN IMMEDIATE … COMMIT` on `db` (opened with isolation_level=None),
    rolled back on any error. IMMEDIATE takes the write lock before the first read, so a
    read-then-write inside cannot interleave with another writer."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db.cursor()
        db.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (a failed COMMIT); keep the first error.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class SqliteStore(SqlLogStore):
    """`LogStore` over one SQLite file."""

    Error = sqlite3.Error

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self.where = str(path)
        if not create and not path.exists():
            raise ConfigInvalid(f"no audit log at {path}")
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if create:
                self._db.executescript(_SCHEMA + _triggers())
            else:
                self._db.execute("SELECT 1 FROM head LIMIT 1")
        except sqlite3.Error as exc:
            raise self._translate(exc, "cannot open") from None
        except OSError as exc:
            raise AuditLogUnavailable(f"audit store {path}: {exc.strerror}") from None

    def _sql(self, statement: str) -> str:
        return statement

    def _translate(self, exc: Exception, what: str) -> GovbusError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "malformed" in text or "not a database" in text or "corrupt" in text
        ):
            return AuditLogCorrupt(
                f"audit store {self.where}: {what}: the SQLite file is damaged ({text})"
            )
        if isinstance(exc, sqlite3.IntegrityError):
            return AuditLogCorrupt(f"audit store {self.where}: {what}: {text}")
        return AuditLogUnavailable(f"audit store {self.where}: {what}: {text}")

    def _transaction(self) -> AbstractContextManager[sqlite3.Cursor]:
        return immediate_transaction(self._db)

    def _insert_records(self, cursor: Any, rows: Sequence[LeafRow]) -> None:
        cursor.executemany(
            "INSERT INTO records (idx, leaf_hash, record, request_id, subject, logged_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def scan(self, start: int, end: int) -> Iterator[tuple[int, bytes, bytes]]:
        try:
            cur = self._db.execute(
                "SELECT idx, CAST(leaf_hash AS BLOB), CAST(record AS BLOB) FROM records "
                "WHERE idx >= ? AND idx < ? "
                "ORDER BY idx",
                (start, end),
            )
            while True:
                chunk = cur.fetchmany(4096)
                if not chunk:
                    return
                yield from chunk
        except sqlite3.Error as exc:
            raise self._translate(exc, "read failed") from None

    def records(self, indexes: Sequence[int]) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for i in range(0, len(indexes), 500):
            part = list(indexes[i : i + 500])
            marks = ",".join("?" * len(part))
            # Only "?" placeholders are formatted in; the values travel as parameters.
            query = f"SELECT idx, CAST(record AS BLOB) FROM records WHERE idx IN ({marks})"  # noqa: S608
            rows = self._all(query, tuple(part))
            out += [(int(a), bytes(b)) for a, b in rows]
        return sorted(out)
