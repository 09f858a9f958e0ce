"""The migration police store: registrations of residence, and the addresses they may name.

`address` is this registry's own copy of the address register's codes (kept in sync
in reality; filled from the same world here), so a registration at an unknown code
is refused without calling another registry.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = ["ADDRESS_INSERT", "INDEXES", "INSERT", "SCHEMA_VERSION", "TABLES", "ResidenceStore"]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE address (
    rca TEXT PRIMARY KEY,
    line TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE registration (
    id INTEGER PRIMARY KEY,
    iin TEXT NOT NULL,
    rca TEXT NOT NULL REFERENCES address (rca),
    kind INTEGER NOT NULL,           -- kz.gov.migration.v1.RegistrationKind
    since_date TEXT NOT NULL,
    until_date TEXT,                 -- NULL while current
    reason TEXT NOT NULL DEFAULT ''
);
"""

INDEXES = """
CREATE INDEX registration_person ON registration (iin, since_date);
CREATE INDEX registration_current ON registration (rca) WHERE until_date IS NULL;
"""

ADDRESS_INSERT = "INSERT INTO address VALUES (?, ?)"
INSERT = "INSERT INTO registration (iin, rca, kind, since_date, until_date) VALUES (?, ?, ?, ?, ?)"
_SELECT = (
    "SELECT r.id, r.iin, r.rca, a.line, r.kind, r.since_date, r.until_date "
    "FROM registration r JOIN address a ON a.rca = r.rca "
)


class ResidenceStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> ResidenceStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def address(self, rca: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM address WHERE rca = ?", (rca,)
        ).fetchone()
        return row

    def current(self, iin: str, kind: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            _SELECT + "WHERE r.iin = ? AND r.kind = ? AND r.until_date IS NULL "
            "ORDER BY r.since_date DESC LIMIT 1",
            (iin, kind),
        ).fetchone()
        return row

    def history(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            _SELECT + "WHERE r.iin = ? ORDER BY r.since_date, r.id", (iin,)
        ).fetchall()

    def residents(self, rca: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            _SELECT + "WHERE r.rca = ? AND r.until_date IS NULL ORDER BY r.since_date, r.iin",
            (rca,),
        ).fetchall()

    def by_id(self, registration_id: int) -> sqlite3.Row:
        row: sqlite3.Row = self.conn.execute(
            _SELECT + "WHERE r.id = ?", (registration_id,)
        ).fetchone()
        return row

    def register(self, values: tuple[Any, ...], close_id: int | None, close_on: str) -> int:
        """Insert a registration, ending registration `close_id` on `close_on` first."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            if close_id is not None:
                self.conn.execute(
                    "UPDATE registration SET until_date = ?, reason = 'moved' WHERE id = ?",
                    (close_on, close_id),
                )
            cursor = self.conn.execute(INSERT, values)
        return int(cursor.lastrowid or 0)

    def deregister(self, registration_id: int, until: str, reason: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE registration SET until_date = ?, reason = ? WHERE id = ?",
                (until, reason, registration_id),
            )
