"""The ГЦВП store: assigned benefits and the payments made on them.

A benefit row is one assignment (or a pending application, or a refusal) to one
recipient, with the child it is for where there is one. Payments are keyed
(benefit, period) in a WITHOUT ROWID table, so a recipient's payments are found
through their benefits with one range scan each. Owns its schema; knows nothing
of gRPC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = [
    "BENEFIT_INSERT",
    "INDEXES",
    "PAYMENT_INSERT",
    "SCHEMA_VERSION",
    "TABLES",
    "BenefitStore",
    "benefit_id",
]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE benefit (
    id INTEGER PRIMARY KEY,
    iin TEXT NOT NULL,               -- the recipient
    kind INTEGER NOT NULL,           -- kz.gov.benefits.v1.BenefitKind
    status INTEGER NOT NULL,         -- kz.gov.benefits.v1.BenefitStatus
    monthly_tiyn INTEGER NOT NULL CHECK (monthly_tiyn >= 0),
    one_off_tiyn INTEGER NOT NULL CHECK (one_off_tiyn >= 0),
    applied_date TEXT NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,          -- '' while open-ended
    child_iin TEXT NOT NULL          -- '' when the benefit is not for a child
);
CREATE TABLE payment (
    benefit_id INTEGER NOT NULL REFERENCES benefit (id),
    period TEXT NOT NULL,            -- "YYYY-MM"
    paid_date TEXT NOT NULL,
    amount_tiyn INTEGER NOT NULL CHECK (amount_tiyn > 0),
    PRIMARY KEY (benefit_id, period)
) WITHOUT ROWID;
"""

INDEXES = """
CREATE INDEX benefit_recipient ON benefit (iin, start_date);
CREATE INDEX benefit_child ON benefit (child_iin, kind) WHERE child_iin != '';
"""

BENEFIT_INSERT = "INSERT INTO benefit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
PAYMENT_INSERT = "INSERT INTO payment VALUES (?, ?, ?, ?)"


def benefit_id(row_id: int) -> str:
    """The benefit's public id, e.g. "GCVP-000001234"."""
    return f"GCVP-{row_id:09d}"


class BenefitStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> BenefitStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def benefits(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM benefit WHERE iin = ? ORDER BY start_date, id", (iin,)
        ).fetchall()

    def benefits_for_child(self, child_iin: str, kind: int) -> list[sqlite3.Row]:
        return self.conn.execute(
            # The `!= ''` term lets SQLite use the partial index benefit_child.
            "SELECT * FROM benefit WHERE child_iin = ? AND child_iin != '' AND kind = ? "
            "ORDER BY start_date, id",
            (child_iin, kind),
        ).fetchall()

    def by_id(self, row_id: int) -> sqlite3.Row:
        row: sqlite3.Row = self.conn.execute(
            "SELECT * FROM benefit WHERE id = ?", (row_id,)
        ).fetchone()
        return row

    def payments(self, iin: str, first: str, last: str) -> list[sqlite3.Row]:
        """Payments to a recipient for periods first…last ("YYYY-MM", inclusive)."""
        return self.conn.execute(
            "SELECT b.iin, p.* FROM benefit b JOIN payment p ON p.benefit_id = b.id "
            "WHERE b.iin = ? AND p.period BETWEEN ? AND ? ORDER BY p.period, p.benefit_id",
            (iin, first, last),
        ).fetchall()

    def add(self, values: tuple[Any, ...]) -> int:
        """Insert a benefit (values without the id); returns its row id."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            cursor = self.conn.execute(
                "INSERT INTO benefit (iin, kind, status, monthly_tiyn, one_off_tiyn, "
                "applied_date, start_date, end_date, child_iin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        return int(cursor.lastrowid or 0)
