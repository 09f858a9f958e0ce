"""The КГД store: taxpayers, current debts and declarations, in one SQLite file.

Owns its schema; knows nothing of gRPC. A taxpayer is keyed by IIN or BIN (they
cannot collide: digits 5-6 of a BIN are never a day of the month). Debts are the
unpaid principal per budget code (КБК) and the day it fell due; the penalty grows
with the days and is computed when asked, never stored. New declaration numbers come
from a sequence far above the synthetic world's.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number

__all__ = [
    "DEBT_INSERT",
    "DECLARATION_INSERT",
    "INDEXES",
    "NEW_DECLARATIONS_FROM",
    "SCHEMA_VERSION",
    "TABLES",
    "TAXPAYER_INSERT",
    "TaxStore",
]

SCHEMA_VERSION = 1
#: Declarations submitted through the adapter take serials from here.
NEW_DECLARATIONS_FROM = 9_000_000_000

TABLES = """
CREATE TABLE taxpayer (
    taxpayer_id TEXT PRIMARY KEY,     -- IIN or BIN
    id_kind TEXT NOT NULL CHECK (id_kind IN ('iin', 'bin')),
    kind INTEGER NOT NULL,            -- kz.gov.tax.v1.TaxpayerKind
    name TEXT NOT NULL,
    registered_date TEXT NOT NULL,
    deregistered_date TEXT,           -- death, or liquidation of an entity
    tax_office TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE debt (
    taxpayer_id TEXT NOT NULL,
    budget_code TEXT NOT NULL,        -- КБК
    description TEXT NOT NULL,
    principal_tiyn INTEGER NOT NULL CHECK (principal_tiyn > 0),
    since_date TEXT NOT NULL,
    PRIMARY KEY (taxpayer_id, budget_code, since_date)
) WITHOUT ROWID;
CREATE TABLE declaration (
    declaration_id TEXT PRIMARY KEY,
    taxpayer_id TEXT NOT NULL,
    form TEXT NOT NULL,
    tax_year INTEGER NOT NULL,
    period INTEGER NOT NULL,          -- 0 a whole year, 1 or 2 a half-year
    submitted_date TEXT NOT NULL,
    status INTEGER NOT NULL,          -- kz.gov.tax.v1.DeclarationStatus
    income_tiyn INTEGER NOT NULL,
    tax_tiyn INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE sequence (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = """
CREATE INDEX declaration_taxpayer ON declaration (taxpayer_id, tax_year, form, period);
"""

TAXPAYER_INSERT = "INSERT INTO taxpayer VALUES (?, ?, ?, ?, ?, ?, ?)"
DEBT_INSERT = "INSERT INTO debt VALUES (?, ?, ?, ?, ?)"
DECLARATION_INSERT = "INSERT INTO declaration VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


class TaxStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> TaxStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def taxpayer(self, taxpayer_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM taxpayer WHERE taxpayer_id = ?", taxpayer_id)

    def debts(self, taxpayer_id: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM debt WHERE taxpayer_id = ? ORDER BY since_date, budget_code",
            (taxpayer_id,),
        ).fetchall()

    def declarations(self, taxpayer_id: str, tax_year: int = 0) -> list[sqlite3.Row]:
        if tax_year:
            return self.conn.execute(
                "SELECT * FROM declaration WHERE taxpayer_id = ? AND tax_year = ? "
                "ORDER BY tax_year, form, period, submitted_date, declaration_id",
                (taxpayer_id, tax_year),
            ).fetchall()
        return self.conn.execute(
            "SELECT * FROM declaration WHERE taxpayer_id = ? "
            "ORDER BY tax_year, form, period, submitted_date, declaration_id",
            (taxpayer_id,),
        ).fetchall()

    def declaration(self, declaration_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM declaration WHERE declaration_id = ?", declaration_id)

    def filed_periods(self, taxpayer_id: str, form: str, tax_year: int, rejected: int) -> set[int]:
        """Periods of a year for which a declaration stands (not rejected)."""
        rows = self.conn.execute(
            "SELECT period FROM declaration WHERE taxpayer_id = ? AND tax_year = ? "
            "AND form = ? AND status != ?",
            (taxpayer_id, tax_year, form, rejected),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def submit(self, make_id: Any, values: tuple[Any, ...]) -> str:
        """Insert a declaration whose id `make_id(serial)` builds; returns the id."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            serial = take_number(
                self.conn, "declaration", first=NEW_DECLARATIONS_FROM, column="name"
            )
            declaration_id = str(make_id(serial))
            self.conn.execute(DECLARATION_INSERT, (declaration_id, *values))
        return declaration_id
