"""The ГБД ЮЛ store: legal entities, their founders and their directors, in one SQLite file.

Owns its schema; knows nothing of gRPC. The director of an entity is kept twice on
purpose: in `entity` (the current one, read on every lookup) and in `director` (the
whole history, one row per term). An active entity's name is unique, whatever its
case: the partial unique index on `name_key` enforces it even against a race.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database

__all__ = [
    "DIRECTOR_INSERT",
    "ENTITY_INSERT",
    "FOUNDER_INSERT",
    "INDEXES",
    "SCHEMA_VERSION",
    "TABLES",
    "EntityStore",
    "name_key",
]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE entity (
    bin TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,          -- casefolded name: uniqueness among active entities
    legal_form INTEGER NOT NULL,     -- kz.gov.gbdul.v1.LegalForm
    registration_date TEXT NOT NULL,
    liquidation_date TEXT,
    director_iin TEXT NOT NULL,
    director_name TEXT NOT NULL,     -- '' when the registry was never told the name
    director_since TEXT NOT NULL,
    rca TEXT NOT NULL,
    address_line TEXT NOT NULL,      -- '' for entities registered here by address code only
    oked_code TEXT NOT NULL,
    oked_name TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE founder (
    bin TEXT NOT NULL,
    position INTEGER NOT NULL,
    founder_iin TEXT,
    founder_bin TEXT,
    name TEXT NOT NULL,
    share_basis_points INTEGER NOT NULL,
    PRIMARY KEY (bin, position),
    CHECK ((founder_iin IS NULL) <> (founder_bin IS NULL))
) WITHOUT ROWID;
CREATE TABLE director (
    bin TEXT NOT NULL,
    iin TEXT NOT NULL,
    since_date TEXT NOT NULL,
    until_date TEXT,
    PRIMARY KEY (bin, since_date, iin)
) WITHOUT ROWID;
"""

INDEXES = """
CREATE INDEX entity_director ON entity (director_iin);
CREATE UNIQUE INDEX entity_active_name ON entity (name_key) WHERE liquidation_date IS NULL;
CREATE INDEX founder_person ON founder (founder_iin) WHERE founder_iin IS NOT NULL;
CREATE INDEX founder_entity ON founder (founder_bin) WHERE founder_bin IS NOT NULL;
"""

ENTITY_INSERT = "INSERT INTO entity VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
FOUNDER_INSERT = "INSERT INTO founder VALUES (?, ?, ?, ?, ?, ?)"
DIRECTOR_INSERT = "INSERT INTO director VALUES (?, ?, ?, ?)"


def name_key(name: str) -> str:
    """The form in which two names count as the same: case and spacing ignored."""
    return " ".join(name.casefold().split())


class EntityStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> EntityStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def entity(self, bin_: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM entity WHERE bin = ?", bin_)

    def active_by_name(self, name: str) -> sqlite3.Row | None:
        return self._one(
            "SELECT * FROM entity WHERE name_key = ? AND liquidation_date IS NULL", name_key(name)
        )

    def founders(self, bin_: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM founder WHERE bin = ? ORDER BY position", (bin_,)
        ).fetchall()

    def directed_by(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT bin, name FROM entity WHERE director_iin = ? ORDER BY bin", (iin,)
        ).fetchall()

    def founded_by(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT e.bin, e.name FROM founder f JOIN entity e ON e.bin = f.bin "
            "WHERE f.founder_iin = ? ORDER BY e.bin",
            (iin,),
        ).fetchall()

    def known_name(self, iin: str) -> str:
        """The name under which the registry already knows a person (as a founder), or ''."""
        row = self._one("SELECT name FROM founder WHERE founder_iin = ? LIMIT 1", iin) or self._one(
            "SELECT director_name AS name FROM entity WHERE director_iin = ? "
            "AND director_name != '' LIMIT 1",
            iin,
        )
        return "" if row is None else str(row["name"])

    def used_serials(self, prefix: str) -> set[str]:
        """BIN serials (digits 7-11) taken for a registration month, kind and division."""
        rows = self.conn.execute(
            "SELECT bin FROM entity WHERE bin >= ? AND bin < ?", (prefix, prefix + ":")
        ).fetchall()
        return {row[0][6:11] for row in rows}

    def register(
        self, entity: Sequence[Any], founders: Sequence[Sequence[Any]], director: Sequence[Any]
    ) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(ENTITY_INSERT, entity)
            self.conn.executemany(FOUNDER_INSERT, founders)
            self.conn.execute(DIRECTOR_INSERT, director)

    def change_director(self, bin_: str, iin: str, name: str, since: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE director SET until_date = ? WHERE bin = ? AND until_date IS NULL",
                (since, bin_),
            )
            self.conn.execute(DIRECTOR_INSERT, (bin_, iin, since, None))
            self.conn.execute(
                "UPDATE entity SET director_iin = ?, director_name = ?, director_since = ? "
                "WHERE bin = ?",
                (iin, name, since, bin_),
            )
