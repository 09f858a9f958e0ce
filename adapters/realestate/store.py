"""The real-estate register store: objects, rights and encumbrances, in one SQLite file.

Owns its schema; knows nothing of gRPC. Rights are a history: a transfer closes the
current holders' rows (`until_date`) and adds the new holders' ones, so who held a
property on any day stays answerable; the current holders are the rows without an
end. An encumbrance is in force while it has no end or its end is still to come.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = [
    "ENCUMBRANCE_INSERT",
    "INDEXES",
    "PROPERTY_INSERT",
    "RIGHT_INSERT",
    "SCHEMA_VERSION",
    "TABLES",
    "PropertyStore",
]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE property (
    cadastral_number TEXT PRIMARY KEY,
    rca TEXT NOT NULL,
    address_line TEXT NOT NULL,
    kind INTEGER NOT NULL,            -- kz.gov.realestate.v1.PropertyKind
    area_dm2 INTEGER NOT NULL CHECK (area_dm2 > 0),
    registered_date TEXT NOT NULL     -- when the current holders' right was registered
) WITHOUT ROWID;
CREATE TABLE holder_right (
    id INTEGER PRIMARY KEY,           -- two transfers may happen on one day
    cadastral_number TEXT NOT NULL,
    position INTEGER NOT NULL,
    since_date TEXT NOT NULL,
    holder_iin TEXT,
    holder_bin TEXT,
    share_basis_points INTEGER NOT NULL,
    until_date TEXT,
    basis TEXT NOT NULL,
    CHECK ((holder_iin IS NULL) <> (holder_bin IS NULL))
);
CREATE TABLE encumbrance (
    cadastral_number TEXT NOT NULL,
    kind INTEGER NOT NULL,            -- kz.gov.realestate.v1.EncumbranceKind
    holder TEXT NOT NULL,
    since_date TEXT NOT NULL,
    until_date TEXT,
    PRIMARY KEY (cadastral_number, kind, since_date, holder)
) WITHOUT ROWID;
"""

INDEXES = """
CREATE INDEX right_property ON holder_right (cadastral_number, until_date);
CREATE INDEX right_person ON holder_right (holder_iin)
    WHERE holder_iin IS NOT NULL AND until_date IS NULL;
CREATE INDEX right_entity ON holder_right (holder_bin)
    WHERE holder_bin IS NOT NULL AND until_date IS NULL;
"""

PROPERTY_INSERT = "INSERT INTO property VALUES (?, ?, ?, ?, ?, ?)"
RIGHT_INSERT = (
    "INSERT INTO holder_right (cadastral_number, position, since_date, holder_iin, holder_bin, "
    "share_basis_points, until_date, basis) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
ENCUMBRANCE_INSERT = "INSERT INTO encumbrance VALUES (?, ?, ?, ?, ?)"


class PropertyStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> PropertyStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def property(self, cadastral_number: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM property WHERE cadastral_number = ?", cadastral_number)

    def holders(self, cadastral_number: str) -> list[sqlite3.Row]:
        """The current holders."""
        return self.conn.execute(
            "SELECT * FROM holder_right WHERE cadastral_number = ? AND until_date IS NULL "
            "ORDER BY position",
            (cadastral_number,),
        ).fetchall()

    def held_by(self, column: str, identifier: str) -> list[str]:
        """Cadastral numbers a person (`holder_iin`) or entity (`holder_bin`) holds now."""
        if column not in ("holder_iin", "holder_bin"):
            raise ValueError(column)
        rows = self.conn.execute(
            f"SELECT DISTINCT cadastral_number FROM holder_right "  # noqa: S608 - fixed names
            f"WHERE {column} = ? AND until_date IS NULL ORDER BY cadastral_number",
            (identifier,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def encumbrances(self, cadastral_number: str, on: str) -> list[sqlite3.Row]:
        """Encumbrances in force on a day."""
        return self.conn.execute(
            "SELECT * FROM encumbrance WHERE cadastral_number = ? AND since_date <= ? "
            "AND (until_date IS NULL OR until_date > ?) ORDER BY since_date, kind",
            (cadastral_number, on, on),
        ).fetchall()

    def transfer(
        self, cadastral_number: str, day: str, basis: str, holders: Sequence[tuple[Any, ...]]
    ) -> None:
        """Close the current rights on `day` and register `holders` (iin, bin, share)."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE holder_right SET until_date = ? "
                "WHERE cadastral_number = ? AND until_date IS NULL",
                (day, cadastral_number),
            )
            self.conn.executemany(
                RIGHT_INSERT,
                [
                    (cadastral_number, position, day, iin, bin_, share, None, basis)
                    for position, (iin, bin_, share) in enumerate(holders)
                ],
            )
            self.conn.execute(
                "UPDATE property SET registered_date = ? WHERE cadastral_number = ?",
                (day, cadastral_number),
            )
