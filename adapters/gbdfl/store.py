"""The ГБД ФЛ store: one SQLite file of persons (the IIN registry).

Owns its schema; knows nothing of gRPC. Every method is one indexed query or one
short transaction, run inline by the servicer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = ["INDEXES", "SCHEMA_VERSION", "TABLES", "PersonStore"]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE person (
    iin TEXT PRIMARY KEY,
    last_name TEXT NOT NULL,
    first_name TEXT NOT NULL,
    patronymic TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex INTEGER NOT NULL,              -- kz.gov.gbdfl.v1.Sex
    birth_place TEXT NOT NULL,
    nationality TEXT NOT NULL,
    citizenship TEXT NOT NULL,
    death_date TEXT,
    marital_status INTEGER NOT NULL,   -- kz.gov.gbdfl.v1.MaritalStatus
    doc_number TEXT,
    doc_issued TEXT,
    doc_expires TEXT,
    birth_record_id TEXT,
    death_record_id TEXT,
    father_iin TEXT,
    mother_iin TEXT,
    spouse_iin TEXT,                   -- current, or former when divorced/widowed
    application_id TEXT UNIQUE         -- set for IINs assigned through AssignIin
) WITHOUT ROWID;
CREATE TABLE name_change (
    iin TEXT NOT NULL,
    old_last_name TEXT NOT NULL,
    new_last_name TEXT NOT NULL,
    basis_record_id TEXT NOT NULL,
    changed_date TEXT NOT NULL
);
"""

INDEXES = """
CREATE INDEX person_name ON person (last_name, first_name, birth_date);
CREATE INDEX person_father ON person (father_iin) WHERE father_iin IS NOT NULL;
CREATE INDEX person_mother ON person (mother_iin) WHERE mother_iin IS NOT NULL;
"""

COLUMNS = (
    "iin",
    "last_name",
    "first_name",
    "patronymic",
    "birth_date",
    "sex",
    "birth_place",
    "nationality",
    "citizenship",
    "death_date",
    "marital_status",
    "doc_number",
    "doc_issued",
    "doc_expires",
    "birth_record_id",
    "death_record_id",
    "father_iin",
    "mother_iin",
    "spouse_iin",
    "application_id",
)
# Column names are the constants above, values are placeholders.
INSERT = f"INSERT INTO person ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608


class PersonStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> PersonStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def get(self, iin: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM person WHERE iin = ?", (iin,)
        ).fetchone()
        return row

    def many(self, iins: Sequence[str]) -> list[sqlite3.Row]:
        marks = ", ".join("?" * len(iins))
        return self.conn.execute(f"SELECT * FROM person WHERE iin IN ({marks})", iins).fetchall()  # noqa: S608 - placeholders only

    def search(
        self, last_name: str, first_name: str, birth_date: str, limit: int
    ) -> list[sqlite3.Row]:
        sql = "SELECT * FROM person WHERE last_name = ?"
        args: list[Any] = [last_name]
        if first_name:
            sql += " AND first_name = ?"
            args.append(first_name)
        if birth_date:
            sql += " AND birth_date = ?"
            args.append(birth_date)
        sql += " ORDER BY first_name, birth_date, iin LIMIT ?"
        args.append(limit)
        return self.conn.execute(sql, args).fetchall()

    def children(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM person WHERE father_iin = ? UNION "
            "SELECT * FROM person WHERE mother_iin = ? ORDER BY birth_date, iin",
            (iin, iin),
        ).fetchall()

    def by_application(self, application_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM person WHERE application_id = ?", (application_id,)
        ).fetchone()
        return row

    def used_serials(self, prefix: str) -> set[str]:
        """Serials (IIN digits 8-11) already taken for a birth date and century/sex digit."""
        rows = self.conn.execute(
            "SELECT iin FROM person WHERE iin >= ? AND iin < ?", (prefix, prefix + ":")
        ).fetchall()
        return {row[0][7:11] for row in rows}

    def insert(self, values: dict[str, Any]) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(INSERT, [values.get(c) for c in COLUMNS])

    def change_last_name(self, iin: str, old: str, new: str, basis: str, today: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("UPDATE person SET last_name = ? WHERE iin = ?", (new, iin))
            self.conn.execute(
                "INSERT INTO name_change VALUES (?, ?, ?, ?, ?)", (iin, old, new, basis, today)
            )

    def register_death(
        self, iin: str, death_date: str, record_id: str, widowed_spouse: str | None, widowed: int
    ) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE person SET death_date = ?, death_record_id = ? WHERE iin = ?",
                (death_date, record_id, iin),
            )
            if widowed_spouse is not None:
                self.conn.execute(
                    "UPDATE person SET marital_status = ? WHERE iin = ?", (widowed, widowed_spouse)
                )
