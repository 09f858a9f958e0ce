"""The КПСиСУ store: convictions, the wanted list and issued certificates, in one SQLite file.

Owns its schema; knows nothing of gRPC. A conviction's `expunge_date` is the day the
law spends it (the end of the sentence plus the period of the Criminal Code); it is
"expunged" once that day has come, so the answer changes with the date, not with a
write. A certificate keeps the convictions it showed on the day it was issued
(`certificate_conviction`), whatever is recorded later. New certificate numbers come
from a per-year sequence far above the synthetic world's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number

__all__ = [
    "CERTIFICATE_CONVICTION_INSERT",
    "CERTIFICATE_INSERT",
    "CONVICTION_INSERT",
    "INDEXES",
    "NEW_CERTIFICATES_FROM",
    "SCHEMA_VERSION",
    "TABLES",
    "WANTED_INSERT",
    "CriminalStore",
]

SCHEMA_VERSION = 1
#: Certificates issued through the adapter are numbered from here within their year.
NEW_CERTIFICATES_FROM = 900_000_000

TABLES = """
CREATE TABLE conviction (
    case_number TEXT PRIMARY KEY,
    iin TEXT NOT NULL,
    article TEXT NOT NULL,
    court TEXT NOT NULL,
    verdict_date TEXT NOT NULL,
    sentence TEXT NOT NULL,
    expunge_date TEXT                 -- NULL: never spent (life imprisonment)
) WITHOUT ROWID;
CREATE TABLE wanted (
    iin TEXT PRIMARY KEY,
    since_date TEXT NOT NULL,
    initiator TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE certificate (
    certificate_number TEXT PRIMARY KEY,
    iin TEXT NOT NULL,
    issued_date TEXT NOT NULL,
    purpose TEXT NOT NULL,
    has_convictions INTEGER NOT NULL,
    full_history INTEGER NOT NULL     -- 1: expunged convictions disclosed too
) WITHOUT ROWID;
CREATE TABLE certificate_conviction (
    certificate_number TEXT NOT NULL,
    case_number TEXT NOT NULL,
    PRIMARY KEY (certificate_number, case_number)
) WITHOUT ROWID;
CREATE TABLE sequence (
    year INTEGER PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = """
CREATE INDEX conviction_person ON conviction (iin, verdict_date);
CREATE INDEX certificate_person ON certificate (iin, issued_date, purpose);
"""

CONVICTION_INSERT = "INSERT INTO conviction VALUES (?, ?, ?, ?, ?, ?, ?)"
WANTED_INSERT = "INSERT INTO wanted VALUES (?, ?, ?)"
CERTIFICATE_INSERT = "INSERT INTO certificate VALUES (?, ?, ?, ?, ?, ?)"
CERTIFICATE_CONVICTION_INSERT = "INSERT INTO certificate_conviction VALUES (?, ?)"


class CriminalStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> CriminalStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def convictions(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM conviction WHERE iin = ? ORDER BY verdict_date, case_number", (iin,)
        ).fetchall()

    def has_unexpunged(self, iin: str, on: str) -> bool:
        row = self._one(
            "SELECT 1 FROM conviction WHERE iin = ? "
            "AND (expunge_date IS NULL OR expunge_date > ?) LIMIT 1",
            iin,
            on,
        )
        return row is not None

    def wanted(self, iin: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM wanted WHERE iin = ?", iin)

    def certificate(self, number: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM certificate WHERE certificate_number = ?", number)

    def certificate_convictions(self, number: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT c.* FROM certificate_conviction l "
            "JOIN conviction c ON c.case_number = l.case_number "
            "WHERE l.certificate_number = ? ORDER BY c.verdict_date, c.case_number",
            (number,),
        ).fetchall()

    def issued_on(self, iin: str, day: str, purpose: str) -> sqlite3.Row | None:
        return self._one(
            "SELECT * FROM certificate WHERE iin = ? AND issued_date = ? AND purpose = ?",
            iin,
            day,
            purpose,
        )

    def issue(
        self,
        year: int,
        iin: str,
        day: str,
        purpose: str,
        has_convictions: bool,
        full_history: bool,
        case_numbers: Sequence[str],
    ) -> str:
        """Record a certificate under the next number of its year; returns the number."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            # Checked again inside the transaction: two identical requests racing
            # get the same certificate.
            existing = self.issued_on(iin, day, purpose)
            if existing is not None:
                return str(existing["certificate_number"])
            serial = take_number(self.conn, year, first=NEW_CERTIFICATES_FROM, column="year")
            number = f"{year:04d}{serial:09d}"
            self.conn.execute(
                CERTIFICATE_INSERT,
                (number, iin, day, purpose, int(has_convictions), int(full_history)),
            )
            self.conn.executemany(
                CERTIFICATE_CONVICTION_INSERT, [(number, case) for case in case_numbers]
            )
        return number
