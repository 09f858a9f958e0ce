"""The ЗАГС store: acts of birth, marriage and death in one SQLite file.

Owns its schema; knows nothing of gRPC. New act numbers come from a sequence
table, far above the numbers of the synthetic world's acts.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number

__all__ = ["INDEXES", "NEW_RECORDS_FROM", "SCHEMA_VERSION", "TABLES", "CivilStore"]

SCHEMA_VERSION = 1
#: Acts registered through the adapter are numbered from here (the world's are lower).
NEW_RECORDS_FROM = 9_000_000_000

TABLES = """
CREATE TABLE birth (
    record_id TEXT PRIMARY KEY,
    child_iin TEXT NOT NULL UNIQUE,
    last_name TEXT NOT NULL,
    first_name TEXT NOT NULL,
    patronymic TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex INTEGER NOT NULL,            -- kz.gov.zags.v1.Sex
    birth_place TEXT NOT NULL,
    mother_iin TEXT,
    father_iin TEXT,
    registered_date TEXT NOT NULL,
    registry_office TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE marriage (
    record_id TEXT PRIMARY KEY,
    husband_iin TEXT NOT NULL,
    wife_iin TEXT NOT NULL,
    marriage_date TEXT NOT NULL,
    wife_surname_before TEXT NOT NULL,
    wife_surname_after TEXT NOT NULL,
    dissolved_date TEXT,
    registry_office TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE death (
    record_id TEXT PRIMARY KEY,
    iin TEXT NOT NULL UNIQUE,
    death_date TEXT NOT NULL,
    death_place TEXT NOT NULL,
    registered_date TEXT NOT NULL,
    registry_office TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE sequence (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = """
CREATE INDEX birth_mother ON birth (mother_iin) WHERE mother_iin IS NOT NULL;
CREATE INDEX birth_father ON birth (father_iin) WHERE father_iin IS NOT NULL;
CREATE INDEX marriage_husband ON marriage (husband_iin);
CREATE INDEX marriage_wife ON marriage (wife_iin);
"""

BIRTH_INSERT = "INSERT INTO birth VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
MARRIAGE_INSERT = "INSERT INTO marriage VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
DEATH_INSERT = "INSERT INTO death VALUES (?, ?, ?, ?, ?, ?)"


class CivilStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> CivilStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def birth(self, child_iin: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM birth WHERE child_iin = ?", child_iin)

    def births_by_parent(self, parent_iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM birth WHERE mother_iin = ? UNION "
            "SELECT * FROM birth WHERE father_iin = ? ORDER BY birth_date, child_iin",
            (parent_iin, parent_iin),
        ).fetchall()

    def marriages(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM marriage WHERE husband_iin = ? UNION "
            "SELECT * FROM marriage WHERE wife_iin = ? ORDER BY marriage_date, record_id",
            (iin, iin),
        ).fetchall()

    def marriage(self, record_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM marriage WHERE record_id = ?", record_id)

    def death(self, iin: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM death WHERE iin = ?", iin)

    def _next_record(self, kind: str) -> str:
        return f"{kind}{take_number(self.conn, kind, first=NEW_RECORDS_FROM):010d}"

    def add_birth(self, values: tuple[Any, ...]) -> str:
        """Insert a birth act (values without the record id); returns its id."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            record_id = self._next_record("B")
            self.conn.execute(BIRTH_INSERT, (record_id, *values))
        return record_id

    def add_marriage(self, values: tuple[Any, ...]) -> str:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            record_id = self._next_record("M")
            self.conn.execute(MARRIAGE_INSERT, (record_id, *values))
        return record_id

    def add_death(self, values: tuple[Any, ...]) -> str:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            record_id = self._next_record("D")
            self.conn.execute(DEATH_INSERT, (record_id, *values))
        return record_id
