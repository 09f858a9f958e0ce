"""The notary store: powers of attorney, inheritance cases and their heirs.

A power of attorney ends early when its principal revokes it or when its principal
or agent dies (Civil Code art. 172); `revoked_date` and `revoke_reason` say which.
An estate has one open inheritance case at a time: a partial unique index keeps a
second one out of the file. New numbers come from a sequence table, far above the
synthetic world's.

Owns its schema; knows nothing of gRPC.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number
from govbus.errors import InvalidIdentifier

__all__ = [
    "CASE_INSERT",
    "HEIR_INSERT",
    "INDEXES",
    "NEW_NUMBERS_FROM",
    "POA_INSERT",
    "SCHEMA_VERSION",
    "TABLES",
    "NotaryStore",
    "case_number",
    "parse_poa_number",
    "poa_number",
]

SCHEMA_VERSION = 1
#: Numbers given by the adapter start here; the world's are far below.
NEW_NUMBERS_FROM = 9_000_000_000
_POA = re.compile(r"PA\d{10}")

TABLES = """
CREATE TABLE power_of_attorney (
    number TEXT PRIMARY KEY,
    principal_iin TEXT NOT NULL,
    agent_iin TEXT NOT NULL CHECK (agent_iin != principal_iin),
    notary TEXT NOT NULL,
    issued_date TEXT NOT NULL,
    valid_until TEXT NOT NULL CHECK (valid_until > issued_date),
    scope TEXT NOT NULL,
    revoked_date TEXT,
    revoke_reason TEXT
) WITHOUT ROWID;
CREATE TABLE inheritance_case (
    case_number TEXT PRIMARY KEY,
    deceased_iin TEXT NOT NULL,
    notary TEXT NOT NULL,
    opened_date TEXT NOT NULL,
    applicant_iin TEXT NOT NULL,
    closed_date TEXT
) WITHOUT ROWID;
CREATE TABLE heir (
    case_number TEXT NOT NULL REFERENCES inheritance_case (case_number),
    iin TEXT NOT NULL,
    position INTEGER NOT NULL,       -- the order heirs joined the case
    PRIMARY KEY (case_number, iin)
) WITHOUT ROWID;
CREATE TABLE sequence (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = """
CREATE INDEX poa_principal ON power_of_attorney (principal_iin, issued_date);
CREATE INDEX poa_agent ON power_of_attorney (agent_iin, issued_date);
CREATE INDEX case_deceased ON inheritance_case (deceased_iin, opened_date);
CREATE UNIQUE INDEX case_open ON inheritance_case (deceased_iin) WHERE closed_date IS NULL;
"""

POA_INSERT = "INSERT INTO power_of_attorney VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
CASE_INSERT = "INSERT INTO inheritance_case VALUES (?, ?, ?, ?, ?, ?)"
HEIR_INSERT = "INSERT INTO heir VALUES (?, ?, ?)"


def poa_number(serial: int) -> str:
    return f"PA{serial:010d}"


def case_number(serial: int) -> str:
    return f"IC{serial:010d}"


def parse_poa_number(text: str, field: str = "number") -> str:
    """A power of attorney's registration number: "PA" and ten digits."""
    value = text.strip() if isinstance(text, str) else ""
    if not value:
        raise InvalidIdentifier(f"{field}: a power of attorney number PA0123456789 is required")
    if not _POA.fullmatch(value) or not value.isascii():
        raise InvalidIdentifier(
            f"{field}: {value[:24]!r} is not a power of attorney number (PA and ten digits)"
        )
    return value


class NotaryStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> NotaryStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def power_of_attorney(self, number: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM power_of_attorney WHERE number = ?", (number,)
        ).fetchone()
        return row

    def powers_of_attorney(self, iin: str) -> list[sqlite3.Row]:
        """As principal or as agent, oldest first."""
        return self.conn.execute(
            "SELECT * FROM power_of_attorney WHERE principal_iin = ? UNION "
            "SELECT * FROM power_of_attorney WHERE agent_iin = ? ORDER BY issued_date, number",
            (iin, iin),
        ).fetchall()

    def active_duplicate(
        self, principal: str, agent: str, scope: str, today: str
    ) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM power_of_attorney WHERE principal_iin = ? AND agent_iin = ? "
            "AND scope = ? AND revoked_date IS NULL AND valid_until >= ?",
            (principal, agent, scope, today),
        ).fetchone()
        return row

    def cases(self, deceased: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM inheritance_case WHERE deceased_iin = ? ORDER BY opened_date",
            (deceased,),
        ).fetchall()

    def case(self, number: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM inheritance_case WHERE case_number = ?", (number,)
        ).fetchone()
        return row

    def heirs(self, number: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT iin FROM heir WHERE case_number = ? ORDER BY position", (number,)
        ).fetchall()
        return [str(row[0]) for row in rows]

    def is_deceased(self, iin: str) -> bool:
        """Known to have died: an inheritance case is opened on the estate."""
        row = self.conn.execute(
            "SELECT 1 FROM inheritance_case WHERE deceased_iin = ? LIMIT 1", (iin,)
        ).fetchone()
        return row is not None

    def _next(self, kind: str) -> int:
        return take_number(self.conn, kind, first=NEW_NUMBERS_FROM)

    def add_power_of_attorney(self, values: Sequence[Any]) -> str:
        """Insert a power of attorney (values without its number); returns its number."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            number = poa_number(self._next("poa"))
            self.conn.execute(POA_INSERT, (number, *values, None, None))
        return number

    def revoke(self, number: str, day: str, reason: str) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE power_of_attorney SET revoked_date = ?, revoke_reason = ? "
                "WHERE number = ? AND revoked_date IS NULL",
                (day, reason, number),
            )

    def open_case(self, deceased: str, applicant: str, notary: str, opened: str) -> str:
        """Open an inheritance case with its applicant as first heir, and end the
        deceased's powers of attorney (as principal or agent) on the same day."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            number = case_number(self._next("case"))
            self.conn.execute(CASE_INSERT, (number, deceased, notary, opened, applicant, None))
            self.conn.execute(HEIR_INSERT, (number, applicant, 0))
            self.conn.execute(
                "UPDATE power_of_attorney SET revoked_date = ?, revoke_reason = "
                "CASE WHEN principal_iin = ? THEN 'death of the principal' "
                "ELSE 'death of the agent' END "
                "WHERE (principal_iin = ? OR agent_iin = ?) AND revoked_date IS NULL "
                "AND valid_until >= ?",
                (opened, deceased, deceased, deceased, opened),
            )
        return number
