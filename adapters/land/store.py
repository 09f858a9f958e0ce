"""The land cadastre store: plots, and the rights held on them over time.

A plot has at most one current right (a row of `plot_right` without `until_date`),
enforced by a unique partial index: a new right ends the previous one in the same
transaction. Owns its schema; knows nothing of gRPC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = ["INDEXES", "PLOT_INSERT", "RIGHT_INSERT", "SCHEMA_VERSION", "TABLES", "LandStore"]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE plot (
    cadastral_number TEXT PRIMARY KEY,
    rca TEXT NOT NULL,               -- '' for land outside settlements (no address code)
    address_line TEXT NOT NULL,
    area_m2 INTEGER NOT NULL CHECK (area_m2 > 0),
    purpose TEXT NOT NULL,
    agricultural INTEGER NOT NULL,   -- 1: agricultural land (leased, never to foreigners)
    cadastral_value_tiyn INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE plot_right (
    id INTEGER PRIMARY KEY,
    cadastral_number TEXT NOT NULL REFERENCES plot (cadastral_number),
    land_right INTEGER NOT NULL,     -- kz.gov.land.v1.LandRight
    holder_iin TEXT,
    holder_bin TEXT,
    since_date TEXT NOT NULL,
    until_date TEXT,                 -- NULL while current
    CHECK ((holder_iin IS NULL) <> (holder_bin IS NULL))
);
"""

INDEXES = """
CREATE UNIQUE INDEX plot_right_current ON plot_right (cadastral_number)
    WHERE until_date IS NULL;
CREATE INDEX plot_right_person ON plot_right (holder_iin)
    WHERE until_date IS NULL AND holder_iin IS NOT NULL;
CREATE INDEX plot_right_company ON plot_right (holder_bin)
    WHERE until_date IS NULL AND holder_bin IS NOT NULL;
"""

PLOT_INSERT = "INSERT INTO plot VALUES (?, ?, ?, ?, ?, ?, ?)"
RIGHT_INSERT = (
    "INSERT INTO plot_right (cadastral_number, land_right, holder_iin, holder_bin, since_date) "
    "VALUES (?, ?, ?, ?, ?)"
)
_CURRENT = (
    "SELECT p.*, r.id AS right_id, r.land_right, r.holder_iin, r.holder_bin, r.since_date "
    "FROM plot p JOIN plot_right r ON r.cadastral_number = p.cadastral_number "
    "AND r.until_date IS NULL "
)


class LandStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> LandStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def plot(self, cadastral_number: str) -> sqlite3.Row | None:
        """The plot with its current right (None when there is no such plot)."""
        row: sqlite3.Row | None = self.conn.execute(
            _CURRENT + "WHERE p.cadastral_number = ?", (cadastral_number,)
        ).fetchone()
        return row

    def plots_of_person(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            _CURRENT + "WHERE r.holder_iin = ? ORDER BY r.since_date, p.cadastral_number", (iin,)
        ).fetchall()

    def plots_of_company(self, bin_: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            _CURRENT + "WHERE r.holder_bin = ? ORDER BY r.since_date, p.cadastral_number", (bin_,)
        ).fetchall()

    def register_right(self, values: tuple[Any, ...], close_id: int) -> None:
        """End right `close_id` on the new right's start date and insert the new right."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE plot_right SET until_date = ? WHERE id = ?", (values[4], close_id)
            )
            self.conn.execute(RIGHT_INSERT, values)
