"""The SQL both audit stores share: every query and the shape of `append`, written once.

`SqlLogStore` implements `LogStore` for SQLite and PostgreSQL alike. Its statements
use `?` placeholders and SQLite's spelling (`CAST(x AS BLOB)`, which makes SQLite hand
back bytes even from a value stored with another type); a backend adapts them in
`_sql` and supplies only what really differs: connecting and creating the schema, the
write transaction, loading records in bulk, streaming a scan, fetching records by
index, and which driver errors mean a damaged store rather than an unavailable one.

It never opens a connection itself and never interprets record bytes beyond the columns
it is given.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from audit_log.store import Cosignature, LeafRow, StoredCheckpoint, TreeHead
from govbus.errors import AuditLogCorrupt, GovbusError

__all__ = ["SqlLogStore"]


class SqlLogStore(abc.ABC):
    """`LogStore` over one SQL connection; subclasses provide the backend's parts."""

    #: The driver's base error class: every one is translated, none escapes raw.
    Error: ClassVar[type[Exception]]
    #: How error messages name this store (a file, a schema).
    where: str
    # The driver's connection (sqlite3 and psycopg share the calls used here).
    _db: Any

    # --- what a backend provides ------------------------------------------------------

    @abc.abstractmethod
    def _sql(self, statement: str) -> str:
        """The shared statement in this backend's dialect."""

    @abc.abstractmethod
    def _translate(self, exc: Exception, what: str) -> GovbusError:
        """The vocabulary error for a driver error while doing `what`."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A cursor inside one write transaction: committed on success, else rolled back."""

    @abc.abstractmethod
    def _insert_records(self, cursor: Any, rows: Sequence[LeafRow]) -> None:
        """Insert `rows` into `records` inside the transaction of `cursor`."""

    @abc.abstractmethod
    def scan(self, start: int, end: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(index, stored leaf hash, leaf bytes) in index order, as stored."""

    @abc.abstractmethod
    def records(self, indexes: Sequence[int]) -> list[tuple[int, bytes]]: ...

    # --- writes -----------------------------------------------------------------------

    def append(
        self,
        expected_size: int,
        rows: Sequence[LeafRow],
        nodes: Sequence[tuple[int, int, bytes]],
        head: TreeHead,
        certificates: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        try:
            with self._transaction() as cur:
                self._insert_records(cur, rows)
                if nodes:
                    cur.executemany(
                        self._sql("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)"), nodes
                    )
                if certificates:
                    cur.executemany(
                        self._sql(
                            "INSERT INTO certificates (sha256, der) VALUES (?, ?) "
                            "ON CONFLICT DO NOTHING"
                        ),
                        certificates,
                    )
                if expected_size == 0:
                    cur.execute(
                        self._sql(
                            "INSERT INTO head (id, size, root, frontier) VALUES (0, ?, ?, ?) "
                            "ON CONFLICT DO NOTHING"
                        ),
                        (head.size, head.root, head.frontier),
                    )
                else:
                    cur.execute(
                        self._sql(
                            "UPDATE head SET size = ?, root = ?, frontier = ? "
                            "WHERE id = 0 AND size = ?"
                        ),
                        (head.size, head.root, head.frontier, expected_size),
                    )
                if cur.rowcount != 1:
                    raise AuditLogCorrupt(
                        f"audit store {self.where}: the tree head is not at size {expected_size}; "
                        "another writer changed the log"
                    )
        except self.Error as exc:
            raise self._translate(exc, "append failed") from None

    def _write(self, statement: str, params: tuple[object, ...]) -> None:
        try:
            self._db.execute(self._sql(statement), params)
        except self.Error as exc:
            raise self._translate(exc, "write failed") from None

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self._write(
            "INSERT INTO checkpoints (size, root, note, issued_at_ms) VALUES (?, ?, ?, ?)",
            (checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.issued_at_ms),
        )

    def add_cosignature(self, cosignature: Cosignature) -> None:
        self._write(
            "INSERT INTO cosignatures (size, witness, line, received_at_ms) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (cosignature.size, cosignature.witness, cosignature.line, cosignature.received_at_ms),
        )

    def set_meta(self, key: str, value: bytes) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, value)
        )

    # --- reads ------------------------------------------------------------------------

    def _all(self, statement: str, params: tuple[object, ...] = ()) -> list[Any]:
        try:
            return list(self._db.execute(self._sql(statement), params).fetchall())
        except self.Error as exc:
            raise self._translate(exc, "read failed") from None

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
            rows = self._all(
                "SELECT CAST(leaf_hash AS BLOB) FROM records WHERE idx >= ? AND idx < ? "
                "ORDER BY idx",
                (start, end),
            )
        else:
            rows = self._all(
                "SELECT CAST(hash AS BLOB) FROM nodes WHERE level = ? AND idx >= ? AND idx < ? "
                "ORDER BY idx",
                (level, start, end),
            )
        return [bytes(r[0]) for r in rows]

    def nodes(self, level: int) -> Iterator[tuple[int, bytes]]:
        for idx, value in self._all(
            "SELECT idx, CAST(hash AS BLOB) FROM nodes WHERE level = ? ORDER BY idx", (level,)
        ):
            yield int(idx), bytes(value)

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
        with contextlib.suppress(self.Error):
            self._db.close()
