"""The administrative fines store: one row per fine (постановление), in one SQLite file.

Owns its schema; knows nothing of gRPC. A payment reference pays one fine only: the
partial unique index refuses a second use even against a race.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = ["FINE_INSERT", "INDEXES", "SCHEMA_VERSION", "TABLES", "FineStore"]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE fine (
    fine_id TEXT PRIMARY KEY,
    iin TEXT NOT NULL,
    article TEXT NOT NULL,
    description TEXT NOT NULL,
    amount_tiyn INTEGER NOT NULL CHECK (amount_tiyn > 0),
    issued_date TEXT NOT NULL,
    due_date TEXT NOT NULL,
    status INTEGER NOT NULL,          -- kz.gov.fines.v1.FineStatus
    paid_date TEXT,
    payment_reference TEXT,
    vehicle_plate TEXT NOT NULL       -- '' when not a traffic offence
) WITHOUT ROWID;
"""

INDEXES = """
CREATE INDEX fine_person ON fine (iin, issued_date);
CREATE UNIQUE INDEX fine_payment ON fine (payment_reference) WHERE payment_reference IS NOT NULL;
"""

FINE_INSERT = "INSERT INTO fine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class FineStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> FineStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def fine(self, fine_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM fine WHERE fine_id = ?", fine_id)

    def fines(self, iin: str, status: int | None = None) -> list[sqlite3.Row]:
        if status is None:
            return self.conn.execute(
                "SELECT * FROM fine WHERE iin = ? ORDER BY issued_date, fine_id", (iin,)
            ).fetchall()
        return self.conn.execute(
            "SELECT * FROM fine WHERE iin = ? AND status = ? ORDER BY issued_date, fine_id",
            (iin, status),
        ).fetchall()

    def summary(self, iin: str, unpaid: int, cancelled: int) -> tuple[int, int, int]:
        """(unpaid count, unpaid total in tiyn, count of fines not cancelled)."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(status = ?), 0), "
            "COALESCE(SUM(CASE WHEN status = ? THEN amount_tiyn ELSE 0 END), 0), "
            "COALESCE(SUM(status != ?), 0) FROM fine WHERE iin = ?",
            (unpaid, unpaid, cancelled, iin),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def by_payment(self, reference: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM fine WHERE payment_reference = ?", reference)

    def pay(self, fine_id: str, unpaid: int, paid: int, paid_date: str, reference: str) -> bool:
        """Mark an unpaid fine paid; False if it was no longer unpaid (a concurrent payment)."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            changed = self.conn.execute(
                "UPDATE fine SET status = ?, paid_date = ?, payment_reference = ? "
                "WHERE fine_id = ? AND status = ?",
                (paid, paid_date, reference, fine_id, unpaid),
            ).rowcount
        return bool(changed)
