"""The embedded audit store: one SQLite file in WAL mode with synchronous=FULL.

Every `append` is one `BEGIN IMMEDIATE … COMMIT`, which in WAL mode with
synchronous=FULL returns only after the write-ahead log is on disk: a record
acknowledged is a record that survives a crash or power loss. Readers use their
own connection and see committed data only.

Triggers refuse UPDATE and DELETE on every append-only table; the tree head is
the one row that changes, and only forward from the size the writer expects.
Any SQLite error is reported as `AuditLogUnavailable` (the disk, the file) or
`AuditLogCorrupt` (a damaged file), never as a raw exception.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from audit_log.store import Cosignature, LeafRow, StoredCheckpoint, TreeHead
from govbus.errors import AuditLogCorrupt, AuditLogUnavailable, ConfigInvalid

__all__ = ["SqliteStore"]

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


def _translate(exc: sqlite3.Error, where: str) -> Exception:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    ):
        return AuditLogCorrupt(f"audit store {where}: the SQLite file is damaged ({text})")
    if isinstance(exc, sqlite3.IntegrityError):
        return AuditLogCorrupt(f"audit store {where}: {text}")
    return AuditLogUnavailable(f"audit store {where}: {text}")


class SqliteStore:
    """`LogStore` over one SQLite file."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
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
            raise _translate(exc, f"{path}: cannot open") from None
        except OSError as exc:
            raise AuditLogUnavailable(f"audit store {path}: {exc.strerror}") from None

    # --- writes -----------------------------------------------------------------------

    def append(
        self,
        expected_size: int,
        rows: Sequence[LeafRow],
        nodes: Sequence[tuple[int, int, bytes]],
        head: TreeHead,
        certificates: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO records (idx, leaf_hash, record, request_id, subject, "
                    "logged_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                if nodes:
                    db.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
                if certificates:
                    db.executemany(
                        "INSERT OR IGNORE INTO certificates (sha256, der) VALUES (?, ?)",
                        certificates,
                    )
                if expected_size == 0:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO head (id, size, root, frontier) VALUES (0, ?, ?, ?)",
                        (head.size, head.root, head.frontier),
                    )
                else:
                    cur = db.execute(
                        "UPDATE head SET size = ?, root = ?, frontier = ? "
                        "WHERE id = 0 AND size = ?",
                        (head.size, head.root, head.frontier, expected_size),
                    )
                if cur.rowcount != 1:
                    raise AuditLogCorrupt(
                        f"audit store {self.path}: the tree head is not at size {expected_size}; "
                        "another writer changed the log"
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _translate(exc, f"{self.path}: append failed") from None

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise _translate(exc, f"{self.path}: write failed") from None

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self._write(
            "INSERT INTO checkpoints (size, root, note, issued_at_ms) VALUES (?, ?, ?, ?)",
            (checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.issued_at_ms),
        )

    def add_cosignature(self, cosignature: Cosignature) -> None:
        self._write(
            "INSERT OR IGNORE INTO cosignatures (size, witness, line, received_at_ms) "
            "VALUES (?, ?, ?, ?)",
            (cosignature.size, cosignature.witness, cosignature.line, cosignature.received_at_ms),
        )

    def set_meta(self, key: str, value: bytes) -> None:
        self._write("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- reads ------------------------------------------------------------------------

    def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, f"{self.path}: read failed") from None

    def read_head(self) -> TreeHead | None:
        rows = self._all(
            "SELECT size, CAST(root AS BLOB), CAST(frontier AS BLOB) FROM head WHERE id = 0"
        )
        if not rows:
            return None
        size, root, frontier = rows[0]
        return TreeHead(int(size), bytes(root), bytes(frontier))

    def level_hashes(self, level: int, start: int, end: int) -> list[bytes]:
        if level == 0:
            sql = (
                "SELECT CAST(leaf_hash AS BLOB) FROM records WHERE idx >= ? AND idx < ? "
                "ORDER BY idx"
            )
            rows = self._all(sql, (start, end))
        else:
            sql = (
                "SELECT CAST(hash AS BLOB) FROM nodes WHERE level = ? AND idx >= ? AND idx < ? "
                "ORDER BY idx"
            )
            rows = self._all(sql, (level, start, end))
        return [bytes(r[0]) for r in rows]

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
            raise _translate(exc, f"{self.path}: read failed") from None

    def nodes(self, level: int) -> Iterator[tuple[int, bytes]]:
        for idx, value in self._all(
            "SELECT idx, CAST(hash AS BLOB) FROM nodes WHERE level = ? ORDER BY idx", (level,)
        ):
            yield int(idx), bytes(value)

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

    def find_by_request(self, request_id: str) -> list[tuple[int, bytes]]:
        rows = self._all(
            "SELECT idx, CAST(record AS BLOB) FROM records WHERE request_id = ? ORDER BY idx",
            (request_id,),
        )
        return [(int(a), bytes(b)) for a, b in rows]

    def find_by_subject(
        self, subject: bytes, from_ms: int, to_ms: int, limit: int
    ) -> list[tuple[int, bytes]]:
        rows = self._all(
            "SELECT idx, CAST(record AS BLOB) FROM records WHERE subject = ? AND logged_at_ms >= ? "
            "AND logged_at_ms < ? ORDER BY logged_at_ms, idx LIMIT ?",
            (subject, from_ms, to_ms, limit),
        )
        return [(int(a), bytes(b)) for a, b in rows]

    def bounds(self) -> tuple[int, int | None, int | None]:
        count, low, high = self._all("SELECT count(*), min(idx), max(idx) FROM records")[0]
        return int(count), low, high

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self._all("SELECT size, root, note, issued_at_ms FROM checkpoints ORDER BY size")
        return [StoredCheckpoint(int(a), bytes(b), str(c), int(d)) for a, b, c, d in rows]

    def cosignatures(self, size: int) -> list[Cosignature]:
        rows = self._all(
            "SELECT size, witness, line, received_at_ms FROM cosignatures WHERE size = ? "
            "ORDER BY received_at_ms",
            (size,),
        )
        return [Cosignature(int(a), str(b), str(c), int(d)) for a, b, c, d in rows]

    def certificate(self, sha256: bytes) -> bytes | None:
        rows = self._all("SELECT der FROM certificates WHERE sha256 = ?", (sha256,))
        return bytes(rows[0][0]) if rows else None

    def get_meta(self, key: str) -> bytes | None:
        rows = self._all("SELECT value FROM meta WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
