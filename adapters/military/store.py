"""The military registration store: one record per registered person, and periods of service.

A record keeps the status the defence office last set (conscript, reserve,
exempt, not liable, deregistered). Being in service is not stored: it is a period
of service covering the day asked about, and a conscript who turns 27 without
serving passes to the reserve by law — so the status shown is computed when read
(`MilitaryStore` gives the facts). A deregistered record remembers the status it
had, which a re-registration restores.

Owns its schema; knows nothing of gRPC.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number

__all__ = [
    "INDEXES",
    "NEW_TICKETS_FROM",
    "PERIOD_INSERT",
    "RECORD_INSERT",
    "SCHEMA_VERSION",
    "TABLES",
    "MilitaryStore",
    "ticket_number",
]

SCHEMA_VERSION = 1
#: Tickets written by the adapter are numbered from here; the world's stay below.
NEW_TICKETS_FROM = 9_000_000

TABLES = """
CREATE TABLE record (
    iin TEXT PRIMARY KEY,
    status INTEGER NOT NULL,         -- kz.gov.military.v1.MilitaryStatus, as last set
    office TEXT NOT NULL,
    fitness_category TEXT NOT NULL,  -- А Б В Г Д, empty before the medical board
    rank TEXT NOT NULL,
    registered_date TEXT NOT NULL,
    ticket_number TEXT NOT NULL UNIQUE,
    deregistered_date TEXT,
    deregistered_reason TEXT,
    status_before INTEGER            -- the status a re-registration restores
) WITHOUT ROWID;
CREATE TABLE service_period (
    iin TEXT NOT NULL REFERENCES record (iin),
    from_date TEXT NOT NULL,
    to_date TEXT NOT NULL CHECK (to_date > from_date),
    unit TEXT NOT NULL,
    kind TEXT NOT NULL,              -- conscript, contract
    PRIMARY KEY (iin, from_date)
) WITHOUT ROWID;
CREATE TABLE sequence (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = """
CREATE INDEX record_office ON record (office, status);
"""

RECORD_INSERT = "INSERT INTO record VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
PERIOD_INSERT = "INSERT INTO service_period VALUES (?, ?, ?, ?, ?)"


def ticket_number(military_id: bool, serial: int) -> str:
    """A military ID (ВБ, военный билет) or a conscript's certificate (ПС, приписное)."""
    return f"{'ВБ' if military_id else 'ПС'} {serial:07d}"


class MilitaryStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> MilitaryStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def record(self, iin: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM record WHERE iin = ?", (iin,)
        ).fetchone()
        return row

    def periods(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM service_period WHERE iin = ? ORDER BY from_date", (iin,)
        ).fetchall()

    def in_service(self, iin: str, on: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM service_period WHERE iin = ? AND from_date <= ? AND to_date > ?",
            (iin, on, on),
        ).fetchone()
        return row is not None

    def next_ticket(self) -> int:
        return take_number(
            self.conn, "ticket", first=NEW_TICKETS_FROM, limit=10**7, what="ticket number"
        )

    def register_new(self, values: Sequence[Any], military_id: bool) -> None:
        """Insert a record (values without its ticket number, which comes last)."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            ticket = ticket_number(military_id, self.next_ticket())
            self.conn.execute(
                "INSERT INTO record (iin, status, office, fitness_category, rank, "
                "registered_date, ticket_number) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*values, ticket),
            )

    def reregister(self, iin: str, status: int, office: str, registered: str) -> None:
        """A record at a new office (moving house), or back after deregistration."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE record SET status = ?, office = ?, registered_date = ?, "
                "deregistered_date = NULL, deregistered_reason = NULL, status_before = NULL "
                "WHERE iin = ?",
                (status, office, registered, iin),
            )

    def deregister(self, iin: str, status: int, day: str, reason: str, fitness: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE record SET status_before = status, status = ?, deregistered_date = ?, "
                "deregistered_reason = ?, fitness_category = ? WHERE iin = ?",
                (status, day, reason, fitness, iin),
            )
