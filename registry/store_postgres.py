"""The registry store on PostgreSQL, for a bus with many members and registries.

All tables live in one schema (default `govbus_registry`), so the registry can
share a database with other components and tests can isolate themselves. Reads
run at REPEATABLE READ so a global configuration is built from one consistent
snapshot; every change first updates the revision counter row, which
serializes concurrent writers (even from several registry processes).

It never keeps a transaction open between calls, and reconnects once when the
server dropped the connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql as pgsql

from govbus.errors import ConfigInvalid, ServiceUnavailable
from registry.store import SqlRegistryStore

__all__ = ["PostgresRegistryStore"]

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresRegistryStore(SqlRegistryStore):
    BLOB = "BYTEA"
    SERIAL = "BIGSERIAL PRIMARY KEY"

    def __init__(self, dsn: str, *, schema: str = "govbus_registry") -> None:
        super().__init__()
        if not _SCHEMA.fullmatch(schema):
            raise ConfigInvalid(
                f"PostgreSQL schema name {schema!r} must be lower-case letters, digits or '_'"
            )
        self.dsn = dsn
        self.schema_name = schema
        self._conn = self._connect()
        self._create_schema()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            conn.execute(
                pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    pgsql.Identifier(self.schema_name)
                )
            )
            conn.execute(
                pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(self.schema_name))
            )
        except psycopg.Error as exc:
            raise ServiceUnavailable(
                f"cannot reach the registry database: {exc}", retry_after=1.0
            ) from None
        return conn

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[psycopg.Cursor[Any]]:
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        with self._conn.transaction(), self._conn.cursor() as cursor:
            if not write:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield cursor

    def _is_integrity_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.IntegrityError)

    def _is_database_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.Error)

    def drop_schema(self) -> None:
        """Remove every table of this store (tests and decommissioning)."""
        with self._lock:
            self._conn.execute(
                pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    pgsql.Identifier(self.schema_name)
                )
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
