"""The address register store: one SQLite file of addresses keyed by РКА code."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number

__all__ = ["INDEXES", "INSERT", "SCHEMA_VERSION", "TABLES", "AddressStore"]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE address (
    rca TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,           -- kz.gov.address.v1.AddressKind
    region_code INTEGER NOT NULL,
    region TEXT NOT NULL,
    city TEXT NOT NULL,
    street TEXT NOT NULL,
    house TEXT NOT NULL,
    flat TEXT NOT NULL,
    postal_code TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE sequence (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = """
CREATE UNIQUE INDEX address_place ON address (city, street, house, flat);
"""

INSERT = "INSERT INTO address VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


class AddressStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> AddressStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def get(self, rca: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM address WHERE rca = ?", (rca,)
        ).fetchone()
        return row

    def find(self, city: str, street: str, house: str, flat: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM address WHERE city = ? AND street = ? AND house = ? AND flat = ?",
            (city, street, house, flat),
        ).fetchone()
        return row

    def search(self, city: str, street: str, house: str, limit: int) -> list[sqlite3.Row]:
        sql = "SELECT * FROM address WHERE city = ?"
        args: list[Any] = [city]
        if street:
            sql += " AND street = ?"
            args.append(street)
        if house:
            sql += " AND house = ?"
            args.append(house)
        sql += " ORDER BY street, house, flat LIMIT ?"
        args.append(limit)
        return self.conn.execute(sql, args).fetchall()

    def add(self, make_rca: Any, values: tuple[Any, ...]) -> str:
        """Insert an address; `make_rca(sequence)` gives its code. Returns the code."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            sequence = take_number(self.conn, "rca", first=1)
            rca = str(make_rca(sequence))
            self.conn.execute(INSERT, (rca, *values))
        return rca
