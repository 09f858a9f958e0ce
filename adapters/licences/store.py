"""The driving licence store: every licence ever issued, and deprivations of the right to drive.

A holder's licences form a chain: each new one (renewal, replacement, categories
added) marks the one before as replaced, so at most one licence per holder is
current — a partial unique index makes that a property of the file, not of the
code. A licence's status (valid, expired, suspended) is not stored: it depends on
the day it is read, and `LicenceStore` gives the facts it is computed from.

Owns its schema; knows nothing of gRPC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number

__all__ = [
    "DEPRIVATION_INSERT",
    "INDEXES",
    "LICENCE_INSERT",
    "NEW_NUMBERS_FROM",
    "SCHEMA_VERSION",
    "TABLES",
    "LicenceStore",
    "format_number",
]

SCHEMA_VERSION = 1
#: Licences issued through the adapter are numbered from here ("XA000000"); the world's
#: stay below (eight per person: at most 32,000,000 for the world's 4,000,000 persons).
NEW_NUMBERS_FROM = 90_000_000
# Latin letters that read the same in Cyrillic, as on Kazakh documents.
_LETTERS = "ABCEHKMPTX"
_NUMBERS = len(_LETTERS) ** 2 * 10**6

TABLES = """
CREATE TABLE licence (
    number TEXT PRIMARY KEY,
    iin TEXT NOT NULL,
    categories TEXT NOT NULL,        -- space-separated, in the order of CATEGORIES
    issued_date TEXT NOT NULL,
    expiry_date TEXT NOT NULL,
    replaced_by TEXT REFERENCES licence (number) DEFERRABLE INITIALLY DEFERRED,
    replace_reason TEXT,             -- why the licence that replaced this one was issued
    annulled_date TEXT               -- the holder's death
) WITHOUT ROWID;
CREATE TABLE deprivation (
    iin TEXT NOT NULL,
    from_date TEXT NOT NULL,
    until_date TEXT NOT NULL,
    PRIMARY KEY (iin, from_date)
) WITHOUT ROWID;
CREATE TABLE sequence (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = """
CREATE INDEX licence_holder ON licence (iin, issued_date);
CREATE UNIQUE INDEX licence_current ON licence (iin) WHERE replaced_by IS NULL;
"""

LICENCE_INSERT = "INSERT INTO licence VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
DEPRIVATION_INSERT = "INSERT INTO deprivation VALUES (?, ?, ?)"


def format_number(serial: int) -> str:
    """A licence number: two letters and six digits, e.g. "AB012345" (10⁸ numbers)."""
    letters, digits = divmod(serial, 10**6)
    first, second = divmod(letters, len(_LETTERS))
    if not 0 <= first < len(_LETTERS):
        raise ValueError(f"licence serial {serial} is out of range")
    return f"{_LETTERS[first]}{_LETTERS[second]}{digits:06d}"


class LicenceStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> LicenceStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def current(self, iin: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM licence WHERE iin = ? AND replaced_by IS NULL", (iin,)
        ).fetchone()
        return row

    def history(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM licence WHERE iin = ? ORDER BY issued_date, number", (iin,)
        ).fetchall()

    def licence(self, number: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM licence WHERE number = ?", (number,)
        ).fetchone()
        return row

    def deprived_until(self, iin: str, on: str) -> str | None:
        """The end of the deprivation in force on day `on`, if any."""
        row = self.conn.execute(
            "SELECT MAX(until_date) FROM deprivation WHERE iin = ? AND from_date <= ? "
            "AND until_date > ?",
            (iin, on, on),
        ).fetchone()
        return None if row[0] is None else str(row[0])

    def _next_serial(self) -> int:
        return take_number(
            self.conn, "licence", first=NEW_NUMBERS_FROM, limit=_NUMBERS, what="licence number"
        )

    def issue(self, values: tuple[Any, ...], replaces: str | None, reason: str) -> str:
        """Insert a licence (values without its number), replacing licence `replaces`."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            number = format_number(self._next_serial())
            if replaces is not None:
                # The reference is checked at commit: the old licence leaves the
                # "current" slot before the new one takes it.
                self.conn.execute(
                    "UPDATE licence SET replaced_by = ?, replace_reason = ? WHERE number = ?",
                    (number, reason, replaces),
                )
            self.conn.execute(LICENCE_INSERT, (number, *values, None, None, None))
        return number
