"""The Kazpost store: delivery contacts, deliveries of documents, and the addresses they go to.

`address` is Kazpost's own copy of the address register's codes with their postal
codes (kept in sync in reality, filled from the same world here), so a delivery to
an unknown address is refused without calling another registry. One document from
one sender is on its way to a person at a time: a partial unique index keeps a
second pending delivery out of the file.

Tracking numbers follow the UPU S10 standard: two letters (the service), eight
digits, a check digit, the country ("RR123456785KZ").

Owns its schema; knows nothing of gRPC.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number
from govbus.pb.agencies.kazpost.v1 import kazpost_pb2 as pb

__all__ = [
    "ADDRESS_INSERT",
    "CONTACT_INSERT",
    "DELIVERY_INSERT",
    "INDEXES",
    "NEW_TRACKING_FROM",
    "SCHEMA_VERSION",
    "TABLES",
    "PostStore",
    "s10_check_digit",
    "tracking_number",
]

SCHEMA_VERSION = 1
#: Tracking serials given by the adapter start here; the world's stay below.
NEW_TRACKING_FROM = 90_000_000
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_SERVICE: dict[int, str] = {
    pb.DELIVERY_CHANNEL_POST: "RR",  # registered letter
    pb.DELIVERY_CHANNEL_COURIER: "EE",  # express (EMS)
    pb.DELIVERY_CHANNEL_POSTAMAT: "RP",
}
_PENDING = f"({pb.DELIVERY_STATUS_CREATED}, {pb.DELIVERY_STATUS_IN_TRANSIT})"

TABLES = """
CREATE TABLE address (
    rca TEXT PRIMARY KEY,
    postal_code TEXT NOT NULL,
    city TEXT NOT NULL,
    postamats INTEGER NOT NULL       -- 1: the city has parcel lockers
) WITHOUT ROWID;
CREATE TABLE contact (
    iin TEXT PRIMARY KEY,
    phone TEXT NOT NULL,             -- +7XXXXXXXXXX or empty
    email TEXT NOT NULL,
    rca TEXT NOT NULL REFERENCES address (rca),
    preferred INTEGER NOT NULL,      -- kz.gov.kazpost.v1.DeliveryChannel
    updated_date TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE delivery (
    tracking_number TEXT PRIMARY KEY,
    iin TEXT NOT NULL,
    document_kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    channel INTEGER NOT NULL,        -- kz.gov.kazpost.v1.DeliveryChannel
    status INTEGER NOT NULL,         -- kz.gov.kazpost.v1.DeliveryStatus
    created_date TEXT NOT NULL,
    delivered_date TEXT,
    rca TEXT NOT NULL REFERENCES address (rca)
) WITHOUT ROWID;
CREATE TABLE sequence (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""

INDEXES = f"""
CREATE INDEX delivery_person ON delivery (iin, created_date);
CREATE UNIQUE INDEX delivery_pending ON delivery (iin, document_kind, sender)
    WHERE status IN {_PENDING};
"""

ADDRESS_INSERT = "INSERT INTO address VALUES (?, ?, ?, ?)"
CONTACT_INSERT = "INSERT INTO contact VALUES (?, ?, ?, ?, ?, ?)"
DELIVERY_INSERT = "INSERT INTO delivery VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def s10_check_digit(serial: str) -> int:
    """The UPU S10 check digit of an eight-digit serial."""
    total = sum(int(d) * w for d, w in zip(serial, _S10_WEIGHTS, strict=True))
    check = 11 - total % 11
    return 0 if check == 10 else 5 if check == 11 else check


def tracking_number(channel: int, serial: int) -> str:
    digits = f"{serial:08d}"
    return f"{_SERVICE[channel]}{digits}{s10_check_digit(digits)}KZ"


class PostStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> PostStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def address(self, rca: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM address WHERE rca = ?", rca)

    def contact(self, iin: str) -> sqlite3.Row | None:
        return self._one(
            "SELECT c.*, a.postal_code FROM contact c JOIN address a USING (rca) WHERE c.iin = ?",
            iin,
        )

    def deliveries(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM delivery WHERE iin = ? ORDER BY created_date, tracking_number", (iin,)
        ).fetchall()

    def delivery(self, tracking: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM delivery WHERE tracking_number = ?", tracking)

    def pending(self, iin: str, kind: str, sender: str) -> sqlite3.Row | None:
        return self._one(
            "SELECT * FROM delivery WHERE iin = ? AND document_kind = ? AND sender = ? "
            "AND status IN (?, ?)",
            iin,
            kind,
            sender,
            pb.DELIVERY_STATUS_CREATED,
            pb.DELIVERY_STATUS_IN_TRANSIT,
        )

    def save_contact(self, values: Sequence[Any]) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO contact VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (iin) DO UPDATE SET "
                "phone = excluded.phone, email = excluded.email, rca = excluded.rca, "
                "preferred = excluded.preferred, updated_date = excluded.updated_date",
                tuple(values),
            )

    def add_delivery(self, channel: int, values: Sequence[Any]) -> str:
        """Insert a delivery (values after the tracking number); returns the number."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            serial = take_number(
                self.conn,
                "tracking",
                first=NEW_TRACKING_FROM,
                limit=10**8,
                what="tracking number",
            )
            number = tracking_number(channel, serial)
            self.conn.execute(DELIVERY_INSERT, (number, *values))
        return number
