"""The health registry store: clinics, their district doctors, attachments, vaccinations.

A person has at most one current attachment (a row without `detached_date`,
enforced by a unique partial index); a new one ends the previous one in the same
transaction. The district doctor is looked up when asked, by the person's age: a
paediatrician under 18, a general practitioner after. A vaccination dose is
recorded once (primary key person, vaccine, dose). Owns its schema; knows nothing
of gRPC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = [
    "ATTACHMENT_INSERT",
    "CLINIC_INSERT",
    "DISTRICTS",
    "DOCTOR_INSERT",
    "INDEXES",
    "SCHEMA_VERSION",
    "TABLES",
    "VACCINATION_INSERT",
    "HealthStore",
]

SCHEMA_VERSION = 1
#: Districts (участки) of every clinic; a person's district follows from their IIN.
DISTRICTS = 30

TABLES = """
CREATE TABLE clinic (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    rca TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE doctor (
    clinic_id TEXT NOT NULL REFERENCES clinic (id),
    district INTEGER NOT NULL,
    paediatric INTEGER NOT NULL,     -- 1: paediatrician, 0: general practitioner
    name TEXT NOT NULL,
    PRIMARY KEY (clinic_id, district, paediatric)
) WITHOUT ROWID;
CREATE TABLE attachment (
    id INTEGER PRIMARY KEY,
    iin TEXT NOT NULL,
    clinic_id TEXT NOT NULL REFERENCES clinic (id),
    district INTEGER NOT NULL,
    attached_date TEXT NOT NULL,
    detached_date TEXT               -- NULL while current
);
CREATE TABLE vaccination (
    iin TEXT NOT NULL,
    vaccine_code TEXT NOT NULL,
    dose INTEGER NOT NULL,
    given_date TEXT NOT NULL,
    clinic_id TEXT NOT NULL REFERENCES clinic (id),
    PRIMARY KEY (iin, vaccine_code, dose)
) WITHOUT ROWID;
"""

INDEXES = """
CREATE INDEX clinic_city ON clinic (city, id);
CREATE UNIQUE INDEX attachment_current ON attachment (iin) WHERE detached_date IS NULL;
CREATE INDEX attachment_person ON attachment (iin, attached_date);
"""

CLINIC_INSERT = "INSERT INTO clinic VALUES (?, ?, ?, ?)"
DOCTOR_INSERT = "INSERT INTO doctor VALUES (?, ?, ?, ?)"
ATTACHMENT_INSERT = (
    "INSERT INTO attachment (iin, clinic_id, district, attached_date, detached_date) "
    "VALUES (?, ?, ?, ?, ?)"
)
VACCINATION_INSERT = "INSERT INTO vaccination VALUES (?, ?, ?, ?, ?)"


class HealthStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> HealthStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def clinic(self, clinic_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM clinic WHERE id = ?", clinic_id)

    def clinics(self, city: str | None) -> list[sqlite3.Row]:
        if city is None:
            return self.conn.execute("SELECT * FROM clinic ORDER BY city, id").fetchall()
        return self.conn.execute(
            "SELECT * FROM clinic WHERE city = ? ORDER BY id", (city,)
        ).fetchall()

    def attachment(self, iin: str, paediatric: bool) -> sqlite3.Row | None:
        """The current attachment, with its clinic and the district doctor for this age."""
        return self._one(
            "SELECT a.*, c.name AS clinic_name, c.city, d.name AS doctor FROM attachment a "
            "JOIN clinic c ON c.id = a.clinic_id "
            "LEFT JOIN doctor d ON d.clinic_id = a.clinic_id AND d.district = a.district "
            "AND d.paediatric = ? WHERE a.iin = ? AND a.detached_date IS NULL",
            int(paediatric),
            iin,
        )

    def attach(self, values: tuple[Any, ...], close_id: int | None) -> None:
        """Insert an attachment, ending attachment `close_id` on its date first."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            if close_id is not None:
                self.conn.execute(
                    "UPDATE attachment SET detached_date = ? WHERE id = ?", (values[3], close_id)
                )
            self.conn.execute(ATTACHMENT_INSERT, (*values, None))

    def vaccinations(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM vaccination WHERE iin = ? ORDER BY given_date, vaccine_code, dose",
            (iin,),
        ).fetchall()

    def dose(self, iin: str, code: str, dose: int) -> sqlite3.Row | None:
        return self._one(
            "SELECT * FROM vaccination WHERE iin = ? AND vaccine_code = ? AND dose = ?",
            iin,
            code,
            dose,
        )

    def record_dose(self, values: tuple[Any, ...]) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(VACCINATION_INSERT, values)
