"""The vehicle registry store: vehicles, their ownerships over time, number sequences.

The plate stays with the vehicle; each ownership has its own registration
certificate. A vehicle has exactly one current owner (an ownership row without
`until_date`, enforced by a unique partial index); a transfer ends the current
ownership and starts the next in one transaction. Owns its schema; knows nothing
of gRPC.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from adapters.sdk.database import open_database, take_number

__all__ = [
    "INDEXES",
    "OWNERSHIP_INSERT",
    "SCHEMA_VERSION",
    "SEQUENCE_INSERT",
    "TABLES",
    "VEHICLE_INSERT",
    "VehicleStore",
]

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE vehicle (
    vin TEXT PRIMARY KEY,
    plate TEXT NOT NULL,
    make TEXT NOT NULL,
    model TEXT NOT NULL,
    year INTEGER NOT NULL,
    colour TEXT NOT NULL,
    region INTEGER NOT NULL          -- region of the plate
) WITHOUT ROWID;
CREATE TABLE ownership (
    id INTEGER PRIMARY KEY,
    vin TEXT NOT NULL REFERENCES vehicle (vin),
    owner_iin TEXT,
    owner_bin TEXT,
    since_date TEXT NOT NULL,
    until_date TEXT,                 -- NULL while current
    certificate_number TEXT NOT NULL,
    CHECK ((owner_iin IS NULL) <> (owner_bin IS NULL))
);
CREATE TABLE sequence (
    name TEXT PRIMARY KEY,           -- 'person-plate', 'company-plate-<region>', 'certificate'
    next INTEGER NOT NULL
) WITHOUT ROWID;
"""

INDEXES = """
CREATE UNIQUE INDEX vehicle_plate ON vehicle (plate);
CREATE UNIQUE INDEX ownership_current ON ownership (vin) WHERE until_date IS NULL;
CREATE UNIQUE INDEX ownership_certificate ON ownership (certificate_number);
CREATE INDEX ownership_person ON ownership (owner_iin)
    WHERE until_date IS NULL AND owner_iin IS NOT NULL;
CREATE INDEX ownership_company ON ownership (owner_bin)
    WHERE until_date IS NULL AND owner_bin IS NOT NULL;
"""

VEHICLE_INSERT = "INSERT INTO vehicle VALUES (?, ?, ?, ?, ?, ?, ?)"
OWNERSHIP_INSERT = (
    "INSERT INTO ownership (vin, owner_iin, owner_bin, since_date, until_date, "
    "certificate_number) VALUES (?, ?, ?, ?, ?, ?)"
)
SEQUENCE_INSERT = "INSERT INTO sequence VALUES (?, ?)"
_CURRENT = (
    "SELECT v.*, o.id AS ownership_id, o.owner_iin, o.owner_bin, o.since_date, "
    "o.certificate_number FROM vehicle v JOIN ownership o ON o.vin = v.vin "
    "AND o.until_date IS NULL "
)


class VehicleStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> VehicleStore:
        return cls(open_database(path, SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, args).fetchone()
        return row

    def by_vin(self, vin: str) -> sqlite3.Row | None:
        return self._one(_CURRENT + "WHERE v.vin = ?", vin)

    def by_plate(self, plate: str) -> sqlite3.Row | None:
        return self._one(_CURRENT + "WHERE v.plate = ?", plate)

    def of_person(self, iin: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            _CURRENT + "WHERE o.owner_iin = ? ORDER BY o.since_date, v.vin", (iin,)
        ).fetchall()

    def of_company(self, bin_: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            _CURRENT + "WHERE o.owner_bin = ? ORDER BY o.since_date, v.vin", (bin_,)
        ).fetchall()

    def _take(self, name: str) -> int:
        """The next number of a sequence (inside the caller's transaction)."""
        return take_number(self.conn, name, first=0, column="name")

    def register(
        self,
        vehicle: tuple[Any, ...],
        owner: tuple[str | None, str | None],
        since: str,
        plate_sequence: str,
        plate_of: Any,
        certificate_of: Any,
    ) -> None:
        """Insert a vehicle (without its plate) and its first ownership, numbering both.

        `plate_of(number)` and `certificate_of(number)` format the next numbers of the
        sequences; a plate already taken is skipped.
        """
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            while True:
                plate = plate_of(self._take(plate_sequence))
                if self._one("SELECT 1 FROM vehicle WHERE plate = ?", plate) is None:
                    break
            vin = vehicle[0]
            self.conn.execute(VEHICLE_INSERT, (vin, plate, *vehicle[1:]))
            certificate = certificate_of(self._take("certificate"))
            self.conn.execute(OWNERSHIP_INSERT, (vin, *owner, since, None, certificate))

    def transfer(
        self,
        vin: str,
        close_id: int,
        owner: tuple[str | None, str | None],
        since: str,
        certificate_of: Any,
    ) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("UPDATE ownership SET until_date = ? WHERE id = ?", (since, close_id))
            certificate = certificate_of(self._take("certificate"))
            self.conn.execute(OWNERSHIP_INSERT, (vin, *owner, since, None, certificate))
