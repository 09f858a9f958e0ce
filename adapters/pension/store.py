"""The ЕНПФ store: individual pension accounts, withholding agents and contributions.

A contribution row is one agent's payment for one person and period, with its
amounts by kind (ОПВ, ОПВР, voluntary), keyed (account, period, agent) in a WITHOUT
ROWID table: the rows of one account lie together in period order, so a statement
is one range scan, and a bulk load that inserts them in key order only appends. Agent 0 stands
for "paid by the person", whose BIN is empty. Owns its schema; knows nothing of gRPC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.sdk.database import open_database, take_number

__all__ = [
    "ACCOUNT_INSERT",
    "AGENT_INSERT",
    "CONTRIBUTION_INSERT",
    "INDEXES",
    "NEW_ACCOUNTS_FROM",
    "SCHEMA_VERSION",
    "TABLES",
    "PensionStore",
]

SCHEMA_VERSION = 1
#: Accounts opened through the adapter are numbered from here (the world's are lower).
NEW_ACCOUNTS_FROM = 9_000_000_000

TABLES = """
CREATE TABLE account (
    id INTEGER PRIMARY KEY,
    iin TEXT NOT NULL,
    account_number TEXT NOT NULL,
    opened_date TEXT NOT NULL,
    balance_tiyn INTEGER NOT NULL CHECK (balance_tiyn >= 0),
    last_contribution_date TEXT NOT NULL    -- '' before the first contribution
);
CREATE TABLE agent (
    id INTEGER PRIMARY KEY,                 -- 0: the person paid it themselves
    bin TEXT NOT NULL
);
CREATE TABLE contribution (
    -- One payment order of an agent for a period; its amounts by kind (0: none).
    account_id INTEGER NOT NULL REFERENCES account (id),
    period TEXT NOT NULL,                   -- "YYYY-MM" the income was earned in
    agent_id INTEGER NOT NULL REFERENCES agent (id),
    paid_date TEXT NOT NULL,
    mandatory_tiyn INTEGER NOT NULL,        -- ОПВ
    employer_tiyn INTEGER NOT NULL,         -- ОПВР
    voluntary_tiyn INTEGER NOT NULL,        -- ДПВ
    CHECK (mandatory_tiyn >= 0 AND employer_tiyn >= 0 AND voluntary_tiyn >= 0),
    CHECK (mandatory_tiyn + employer_tiyn + voluntary_tiyn > 0),
    PRIMARY KEY (account_id, period, agent_id)
) WITHOUT ROWID;
CREATE TABLE sequence (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
) WITHOUT ROWID;
"""

INDEXES = """
CREATE UNIQUE INDEX account_person ON account (iin);
CREATE UNIQUE INDEX account_number ON account (account_number);
CREATE UNIQUE INDEX agent_bin ON agent (bin);
"""

ACCOUNT_INSERT = "INSERT INTO account VALUES (?, ?, ?, ?, ?, ?)"
AGENT_INSERT = "INSERT INTO agent VALUES (?, ?)"
CONTRIBUTION_INSERT = "INSERT INTO contribution VALUES (?, ?, ?, ?, ?, ?, ?)"


class PensionStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> PensionStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def account(self, iin: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM account WHERE iin = ?", (iin,)
        ).fetchone()
        return row

    def contributions(self, account_id: int, first: str, last: str) -> list[sqlite3.Row]:
        """Contributions of periods first…last (inclusive, "YYYY-MM"), oldest first."""
        return self.conn.execute(
            "SELECT c.*, g.bin AS agent_bin FROM contribution c JOIN agent g ON g.id = c.agent_id "
            "WHERE c.account_id = ? AND c.period BETWEEN ? AND ? ORDER BY c.period, g.bin",
            (account_id, first, last),
        ).fetchall()

    def open_account(self, iin: str, opened: str) -> None:
        """Open an empty account with the next free account number."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            number = take_number(self.conn, "account", first=NEW_ACCOUNTS_FROM, column="name")
            self.conn.execute(
                "INSERT INTO account (iin, account_number, opened_date, balance_tiyn, "
                "last_contribution_date) VALUES (?, ?, ?, 0, '')",
                (iin, f"{number:010d}", opened),
            )
