"""The audit store for scale: PostgreSQL, one schema per log.

`append` is one transaction (records by COPY, nodes, certificates, the tree
head moved forward only from the expected size) committed with PostgreSQL's
default synchronous commit, so an acknowledged record is on the server's disk.
Readers use their own autocommit connection and a server-side cursor when they
stream the whole log.

Triggers refuse UPDATE, DELETE and TRUNCATE on every append-only table. A
connection failure is `AuditLogUnavailable`; a violated constraint (another
writer, a tampered table) is `AuditLogCorrupt`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from audit_log.store import Cosignature, LeafRow, StoredCheckpoint, TreeHead
from govbus.errors import AuditLogCorrupt, AuditLogUnavailable, ConfigInvalid

__all__ = ["PostgresStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    idx BIGINT PRIMARY KEY,
    leaf_hash BYTEA NOT NULL,
    record BYTEA NOT NULL,
    request_id TEXT NOT NULL,
    subject BYTEA,
    logged_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_request ON records (request_id);
CREATE INDEX IF NOT EXISTS records_by_subject ON records (subject, logged_at_ms)
    WHERE subject IS NOT NULL;
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    size BIGINT NOT NULL, root BYTEA NOT NULL, frontier BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size BIGINT PRIMARY KEY, root BYTEA NOT NULL, note TEXT NOT NULL,
    issued_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS cosignatures (
    size BIGINT NOT NULL, witness TEXT NOT NULL, line TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL, PRIMARY KEY (size, witness, line)
);
CREATE TABLE IF NOT EXISTS certificates (sha256 BYTEA PRIMARY KEY, der BYTEA NOT NULL);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit table % is append-only', TG_TABLE_NAME;
END $$;
"""

_APPEND_ONLY = ("records", "nodes", "checkpoints", "cosignatures", "certificates")


def _triggers() -> str:
    out = []
    for table in _APPEND_ONLY:
        out.append(
            f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_append_only();"
        )
        out.append(
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();"
        )
    return "\n".join(out)


def _translate(exc: psycopg.Error, where: str) -> Exception:
    if isinstance(exc, psycopg.errors.IntegrityError | psycopg.errors.DataCorrupted):
        return AuditLogCorrupt(f"audit store {where}: {exc}")
    return AuditLogUnavailable(f"audit store {where}: {exc}".strip())


class PostgresStore:
    """`LogStore` over one PostgreSQL schema."""

    def __init__(self, conninfo: str, *, schema: str | None = None, create: bool = True) -> None:
        self.schema = schema or "public"
        self.where = f"postgresql schema {self.schema}"
        try:
            self._db = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise AuditLogUnavailable(f"audit store: cannot connect to PostgreSQL: {exc}") from None
        try:
            ident = sql.Identifier(self.schema)
            if create:
                with self._db.transaction():
                    self._db.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s))",
                        (f"govbus-audit:{self.schema}",),
                    )
                    self._db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                    self._db.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
                    self._db.execute(_SCHEMA + _triggers())
            self._db.execute(sql.SQL("SET search_path TO {}").format(ident))
            if not create:
                exists = self._db.execute("SELECT to_regclass('head')").fetchone()
                if exists is None or exists[0] is None:
                    raise ConfigInvalid(f"no audit log in {self.where}")
        except psycopg.Error as exc:
            self._db.close()
            raise _translate(exc, f"{self.where}: cannot open") from None

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
            with db.transaction(), db.cursor() as cur:
                with cur.copy(
                    "COPY records (idx, leaf_hash, record, request_id, subject, logged_at_ms) "
                    "FROM STDIN"
                ) as copy:
                    for r in rows:
                        copy.write_row(r)
                if nodes:
                    cur.executemany(
                        "INSERT INTO nodes (level, idx, hash) VALUES (%s, %s, %s)", nodes
                    )
                if certificates:
                    cur.executemany(
                        "INSERT INTO certificates (sha256, der) VALUES (%s, %s) "
                        "ON CONFLICT DO NOTHING",
                        certificates,
                    )
                if expected_size == 0:
                    cur.execute(
                        "INSERT INTO head (id, size, root, frontier) VALUES (0, %s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        (head.size, head.root, head.frontier),
                    )
                else:
                    cur.execute(
                        "UPDATE head SET size = %s, root = %s, frontier = %s "
                        "WHERE id = 0 AND size = %s",
                        (head.size, head.root, head.frontier, expected_size),
                    )
                if cur.rowcount != 1:
                    raise AuditLogCorrupt(
                        f"audit store {self.where}: the tree head is not at size {expected_size}; "
                        "another writer changed the log"
                    )
        except psycopg.Error as exc:
            raise _translate(exc, f"{self.where}: append failed") from None

    def _write(self, query: str, params: tuple[object, ...]) -> None:
        try:
            self._db.execute(query, params)
        except psycopg.Error as exc:
            raise _translate(exc, f"{self.where}: write failed") from None

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self._write(
            "INSERT INTO checkpoints (size, root, note, issued_at_ms) VALUES (%s, %s, %s, %s)",
            (checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.issued_at_ms),
        )

    def add_cosignature(self, cosignature: Cosignature) -> None:
        self._write(
            "INSERT INTO cosignatures (size, witness, line, received_at_ms) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (cosignature.size, cosignature.witness, cosignature.line, cosignature.received_at_ms),
        )

    def set_meta(self, key: str, value: bytes) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING", (key, value)
        )

    # --- reads ------------------------------------------------------------------------

    def _all(self, query: str, params: tuple[object, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise _translate(exc, f"{self.where}: read failed") from None

    def read_head(self) -> TreeHead | None:
        rows = self._all("SELECT size, root, frontier FROM head WHERE id = 0")
        if not rows:
            return None
        size, root, frontier = rows[0]
        return TreeHead(int(size), bytes(root), bytes(frontier))

    def level_hashes(self, level: int, start: int, end: int) -> list[bytes]:
        if level == 0:
            rows = self._all(
                "SELECT leaf_hash FROM records WHERE idx >= %s AND idx < %s ORDER BY idx",
                (start, end),
            )
        else:
            rows = self._all(
                "SELECT hash FROM nodes WHERE level = %s AND idx >= %s AND idx < %s ORDER BY idx",
                (level, start, end),
            )
        return [bytes(r[0]) for r in rows]

    def scan(self, start: int, end: int) -> Iterator[tuple[int, bytes, bytes]]:
        try:
            with self._db.transaction(), self._db.cursor(name="audit_scan") as cur:
                cur.itersize = 4096
                cur.execute(
                    "SELECT idx, leaf_hash, record FROM records WHERE idx >= %s AND idx < %s "
                    "ORDER BY idx",
                    (start, end),
                )
                for idx, value, record in cur:
                    yield int(idx), bytes(value), bytes(record)
        except psycopg.Error as exc:
            raise _translate(exc, f"{self.where}: read failed") from None

    def nodes(self, level: int) -> Iterator[tuple[int, bytes]]:
        for idx, value in self._all(
            "SELECT idx, hash FROM nodes WHERE level = %s ORDER BY idx", (level,)
        ):
            yield int(idx), bytes(value)

    def records(self, indexes: Sequence[int]) -> list[tuple[int, bytes]]:
        rows = self._all(
            "SELECT idx, record FROM records WHERE idx = ANY(%s) ORDER BY idx", (list(indexes),)
        )
        return [(int(a), bytes(b)) for a, b in rows]

    def find_by_request(self, request_id: str) -> list[tuple[int, bytes]]:
        rows = self._all(
            "SELECT idx, record FROM records WHERE request_id = %s ORDER BY idx", (request_id,)
        )
        return [(int(a), bytes(b)) for a, b in rows]

    def find_by_subject(
        self, subject: bytes, from_ms: int, to_ms: int, limit: int
    ) -> list[tuple[int, bytes]]:
        rows = self._all(
            "SELECT idx, record FROM records WHERE subject = %s AND logged_at_ms >= %s "
            "AND logged_at_ms < %s ORDER BY logged_at_ms, idx LIMIT %s",
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
            "SELECT size, witness, line, received_at_ms FROM cosignatures WHERE size = %s "
            "ORDER BY received_at_ms",
            (size,),
        )
        return [Cosignature(int(a), str(b), str(c), int(d)) for a, b, c, d in rows]

    def certificate(self, sha256: bytes) -> bytes | None:
        rows = self._all("SELECT der FROM certificates WHERE sha256 = %s", (sha256,))
        return bytes(rows[0][0]) if rows else None

    def get_meta(self, key: str) -> bytes | None:
        rows = self._all("SELECT value FROM meta WHERE key = %s", (key,))
        return bytes(rows[0][0]) if rows else None

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._db.close()
