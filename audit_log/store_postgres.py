"""The audit store for scale: PostgreSQL, one schema per log.

`append` is one transaction (records by COPY, nodes, certificates, the tree
head moved forward only from the expected size) committed with PostgreSQL's
default synchronous commit, so an acknowledged record is on the server's disk.
Readers use their own autocommit connection and a server-side cursor when they
stream the whole log.

Triggers refuse UPDATE, DELETE and TRUNCATE on every append-only table. A
connection failure is `AuditLogUnavailable`; a violated constraint (another
writer, a tampered table) is `AuditLogCorrupt`. The queries are shared with
SQLite (`audit_log.store_sql`); this module connects, creates the schema and
supplies the PostgreSQL-only parts (COPY, the server-side scan cursor).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from audit_log.store import LeafRow
from audit_log.store_sql import SqlLogStore
from govbus.errors import AuditLogCorrupt, AuditLogUnavailable, ConfigInvalid, GovbusError

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

_BLOB_CAST = re.compile(r"CAST\((\w+) AS BLOB\)")

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


class PostgresStore(SqlLogStore):
    """`LogStore` over one PostgreSQL schema."""

    Error = psycopg.Error

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
            raise self._translate(exc, "cannot open") from None

    def _sql(self, statement: str) -> str:
        # bytea columns hold only bytes, so SQLite's casts have nothing to do here.
        return _BLOB_CAST.sub(r"\1", statement).replace("?", "%s")

    def _translate(self, exc: Exception, what: str) -> GovbusError:
        if isinstance(exc, psycopg.errors.IntegrityError | psycopg.errors.DataCorrupted):
            return AuditLogCorrupt(f"audit store {self.where}: {what}: {exc}")
        return AuditLogUnavailable(f"audit store {self.where}: {what}: {exc}".strip())

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._db.transaction(), self._db.cursor() as cur:
            yield cur

    def _insert_records(self, cursor: Any, rows: Sequence[LeafRow]) -> None:
        with cursor.copy(
            "COPY records (idx, leaf_hash, record, request_id, subject, logged_at_ms) FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row(r)

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
            raise self._translate(exc, "read failed") from None

    def records(self, indexes: Sequence[int]) -> list[tuple[int, bytes]]:
        rows = self._all(
            "SELECT idx, record FROM records WHERE idx = ANY(?) ORDER BY idx", (list(indexes),)
        )
        return [(int(a), bytes(b)) for a, b in rows]
