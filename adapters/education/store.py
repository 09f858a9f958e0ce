"""The education store: kindergartens, schools, the kindergarten queue, school enrolments.

A waiting child's place in the queue is computed when asked (priority categories
first, then by application date), so every write keeps positions right.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = [
    "ENROLMENT_INSERT",
    "INDEXES",
    "INSTITUTION_INSERT",
    "QUEUE_INSERT",
    "SCHEMA_VERSION",
    "TABLES",
    "EducationStore",
]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE institution (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,              -- KG kindergarten, SCH school
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    rca TEXT NOT NULL,
    capacity INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE queue (
    child_iin TEXT PRIMARY KEY,
    applicant_iin TEXT NOT NULL,
    kindergarten_id TEXT NOT NULL REFERENCES institution (id),
    city TEXT NOT NULL,
    applied_date TEXT NOT NULL,
    desired_date TEXT NOT NULL,
    status INTEGER NOT NULL,         -- kz.gov.education.v1.QueueStatus
    priority INTEGER NOT NULL,       -- kz.gov.education.v1.PriorityCategory
    rank INTEGER NOT NULL,           -- 0: priority category, 1: general queue
    reason TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE TABLE enrolment (
    iin TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES institution (id),
    grade INTEGER NOT NULL,
    since_date TEXT NOT NULL
) WITHOUT ROWID;
"""

INDEXES = """
CREATE INDEX institution_city ON institution (city, kind);
CREATE INDEX queue_order ON queue (city, status, rank, applied_date, child_iin);
"""

INSTITUTION_INSERT = "INSERT INTO institution VALUES (?, ?, ?, ?, ?, ?)"
QUEUE_INSERT = (
    "INSERT INTO queue (child_iin, applicant_iin, kindergarten_id, city, applied_date, "
    "desired_date, status, priority, rank) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
ENROLMENT_INSERT = "INSERT INTO enrolment VALUES (?, ?, ?, ?)"


class EducationStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> EducationStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def institution(self, institution_id: str, kind: str) -> sqlite3.Row | None:
        return self._one(
            "SELECT * FROM institution WHERE id = ? AND kind = ?", institution_id, kind
        )

    def institutions(self, city: str, kind: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM institution WHERE city = ? AND kind = ? ORDER BY id", (city, kind)
        ).fetchall()

    def queue_entry(self, child_iin: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM queue WHERE child_iin = ?", child_iin)

    def position(self, entry: sqlite3.Row, waiting: int) -> int:
        """1 + the number of children ahead in the same city's queue."""
        ahead = self.conn.execute(
            "SELECT COUNT(*) FROM queue WHERE city = ? AND status = ? "
            "AND (rank, applied_date, child_iin) < (?, ?, ?)",
            (entry["city"], waiting, entry["rank"], entry["applied_date"], entry["child_iin"]),
        ).fetchone()[0]
        return int(ahead) + 1

    def enrolment(self, iin: str) -> sqlite3.Row | None:
        return self._one(
            "SELECT e.*, i.name AS school_name, i.city FROM enrolment e "
            "JOIN institution i ON i.id = e.school_id WHERE e.iin = ?",
            iin,
        )

    def enqueue(self, values: tuple[Any, ...]) -> None:
        """Insert a queue entry, replacing a withdrawn one for the same child."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("DELETE FROM queue WHERE child_iin = ?", (values[0],))
            self.conn.execute(QUEUE_INSERT, values)

    def withdraw(self, child_iin: str, status: int, reason: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE queue SET status = ?, reason = ? WHERE child_iin = ?",
                (status, reason, child_iin),
            )
