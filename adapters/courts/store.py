"""The courts and enforcement store: court cases with their parties, enforcement proceedings.

Parties are persons (IIN) and companies (BIN) in one column: the two never collide
(an IIN's fifth digit is a day's tens, 0–3; a BIN's is the entity kind, 4–6). At
most one proceeding per decision and debtor is active (open or suspended): a
partial unique index keeps a second one out of the file.

Owns its schema; knows nothing of gRPC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.sdk.database import open_database
from govbus.pb.agencies.courts.v1 import courts_pb2 as pb

__all__ = [
    "CASE_INSERT",
    "INDEXES",
    "PARTY_INSERT",
    "PROCEEDING_INSERT",
    "SCHEMA_VERSION",
    "TABLES",
    "EnforcementStore",
]

SCHEMA_VERSION = 1

TABLES = f"""
CREATE TABLE court_case (
    case_number TEXT PRIMARY KEY,
    court TEXT NOT NULL,
    kind INTEGER NOT NULL,           -- kz.gov.courts.v1.CaseKind
    subject TEXT NOT NULL,
    filed_date TEXT NOT NULL,
    status TEXT NOT NULL,
    decision_date TEXT
) WITHOUT ROWID;
CREATE TABLE case_party (
    party TEXT NOT NULL,             -- IIN or BIN
    case_number TEXT NOT NULL REFERENCES court_case (case_number),
    role INTEGER NOT NULL,           -- kz.gov.courts.v1.PartyRole
    PRIMARY KEY (party, case_number)
) WITHOUT ROWID;
CREATE TABLE proceeding (
    number TEXT PRIMARY KEY,
    debtor TEXT NOT NULL,            -- IIN or BIN
    debtor_is_company INTEGER NOT NULL,
    creditor TEXT NOT NULL,
    officer TEXT NOT NULL,
    basis TEXT NOT NULL,             -- the court case or executive document enforced
    amount_tiyn INTEGER NOT NULL CHECK (amount_tiyn > 0),
    opened_date TEXT NOT NULL,
    status INTEGER NOT NULL,         -- kz.gov.courts.v1.ProceedingStatus
    closed_date TEXT,
    close_reason TEXT,
    restrictions TEXT NOT NULL,      -- one per line; empty once lifted
    CHECK ((status = {pb.PROCEEDING_STATUS_CLOSED}) = (closed_date IS NOT NULL))
) WITHOUT ROWID;
"""

INDEXES = f"""
CREATE INDEX proceeding_debtor ON proceeding (debtor, opened_date);
CREATE UNIQUE INDEX proceeding_active ON proceeding (basis, debtor)
    WHERE status != {pb.PROCEEDING_STATUS_CLOSED};
"""

CASE_INSERT = "INSERT INTO court_case VALUES (?, ?, ?, ?, ?, ?, ?)"
PARTY_INSERT = "INSERT INTO case_party VALUES (?, ?, ?)"
PROCEEDING_INSERT = "INSERT INTO proceeding VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class EnforcementStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> EnforcementStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def proceeding(self, number: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM proceeding WHERE number = ?", (number,)
        ).fetchone()
        return row

    def proceedings(self, debtor: str, *, open_only: bool) -> list[sqlite3.Row]:
        sql = "SELECT * FROM proceeding WHERE debtor = ?"
        if open_only:
            sql += f" AND status != {pb.PROCEEDING_STATUS_CLOSED}"
        return self.conn.execute(sql + " ORDER BY opened_date, number", (debtor,)).fetchall()

    def cases(self, party: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT c.*, p.role FROM case_party p JOIN court_case c USING (case_number) "
            "WHERE p.party = ? ORDER BY c.filed_date, c.case_number",
            (party,),
        ).fetchall()

    def close_proceeding(self, number: str, closed: str, reason: str) -> bool:
        """Close an active proceeding and lift its restrictions; False if it was not active."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            cursor = self.conn.execute(
                "UPDATE proceeding SET status = ?, closed_date = ?, close_reason = ?, "
                "restrictions = '' WHERE number = ? AND status != ?",
                (
                    pb.PROCEEDING_STATUS_CLOSED,
                    closed,
                    reason,
                    number,
                    pb.PROCEEDING_STATUS_CLOSED,
                ),
            )
        return cursor.rowcount == 1
