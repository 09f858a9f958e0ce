"""The service centre's own durable state: visits, their steps, the consents they hold.

One SQLite file (WAL). The *queue* is not a separate table: it is every step in
state `queued` (failed retryably, with the time of its next attempt) or `waiting`
(needs a queued step), so a visit and what is left of it can never disagree,
and a restart of the application loses nothing — the retrier finds the queued
steps again.

Step states:

| state | meaning |
|---|---|
| pending | not tried yet |
| done | result kept |
| queued | failed retryably (registry down, breaker open, deadline); retried later |
| waiting | needs a step that is queued |
| failed | refused for good (bad data, a rule of the registry, consent refused) |
| blocked | needs a step that failed |

Statements are short and local, so they run inline on the event loop. This
module never calls the bus.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govbus.errors import NotFound, Origin

__all__ = [
    "BLOCKED",
    "DONE",
    "FAILED",
    "PENDING",
    "QUEUED",
    "WAITING",
    "HeldConsent",
    "QueueStats",
    "StepRecord",
    "Visit",
    "VisitStore",
]

PENDING, DONE, QUEUED, WAITING, FAILED, BLOCKED = (
    "pending",
    "done",
    "queued",
    "waiting",
    "failed",
    "blocked",
)
_IN_QUEUE = (QUEUED, WAITING)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS visits (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    iin TEXT NOT NULL,
    operator TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    stage TEXT NOT NULL,
    inputs TEXT NOT NULL,
    consent_request TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS visits_created ON visits (created_ms);
CREATE TABLE IF NOT EXISTS steps (
    visit_id TEXT NOT NULL REFERENCES visits (id),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    agency TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    error_code TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '',
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (visit_id, name)
);
CREATE INDEX IF NOT EXISTS steps_state ON steps (state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS consents (
    visit_id TEXT NOT NULL REFERENCES visits (id),
    role TEXT NOT NULL,
    consent_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    method TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    artefact BLOB NOT NULL,
    PRIMARY KEY (visit_id, role)
);
"""


@dataclass(frozen=True)
class StepRecord:
    name: str
    position: int
    agency: str
    state: str
    attempts: int
    next_attempt_ms: int
    error_code: str
    error: str
    result: dict[str, Any] | None
    updated_ms: int


@dataclass(frozen=True)
class HeldConsent:
    role: str
    consent_id: str
    subject: str
    method: str
    expires_ms: int
    artefact: bytes


@dataclass(frozen=True)
class Visit:
    id: str
    service: str
    iin: str
    operator: str
    created_ms: int
    updated_ms: int
    stage: str  # awaiting-consent | running | consent-failed
    inputs: dict[str, str]
    consent_request: str
    note: str
    steps: tuple[StepRecord, ...]
    consents: tuple[HeldConsent, ...]

    @property
    def status(self) -> str:
        """complete | partial (something queued) | incomplete (something failed) | the stage."""
        if self.stage != "running":
            return self.stage
        states = {s.state for s in self.steps}
        if states <= {DONE}:
            return "complete"
        if states & {QUEUED, WAITING, PENDING}:
            return "partial"
        return "incomplete"

    def results(self) -> dict[str, dict[str, Any]]:
        return {s.name: s.result for s in self.steps if s.state == DONE and s.result is not None}

    def step(self, name: str) -> StepRecord:
        for step in self.steps:
            if step.name == name:
                return step
        raise NotFound(f"visit {self.id} has no step {name}", origin=Origin.CLIENT)

    def consent(self, role: str) -> HeldConsent | None:
        return next((c for c in self.consents if c.role == role), None)


@dataclass(frozen=True)
class QueueStats:
    depth: int  # steps queued or waiting
    queued: int
    waiting: int
    by_agency: dict[str, int]  # steps queued because this registry failed them
    waiting_by_agency: dict[str, int]  # steps for this registry waiting on another's
    oldest_ms: int  # when the oldest queued step last changed; 0 when empty
    failures: dict[str, tuple[str, str, int]]  # agency -> (code, message, at_ms) of its last
    partial_visits: int


class VisitStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a queued step must survive a crash
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- writes --------------------------------------------------------------------------------

    def create_visit(
        self,
        visit_id: str,
        *,
        service: str,
        iin: str,
        operator: str,
        inputs: Mapping[str, str],
        steps: Iterable[tuple[str, str]],  # (name, agency) in order
        now_ms: int,
    ) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO visits (id, service, iin, operator, created_ms, updated_ms, stage,"
                " inputs) VALUES (?, ?, ?, ?, ?, ?, 'awaiting-consent', ?)",
                (visit_id, service, iin, operator, now_ms, now_ms, json.dumps(dict(inputs))),
            )
            self._db.executemany(
                "INSERT INTO steps (visit_id, name, position, agency, state, updated_ms)"
                " VALUES (?, ?, ?, ?, 'pending', ?)",
                [(visit_id, n, i, a, now_ms) for i, (n, a) in enumerate(steps)],
            )

    def set_stage(
        self, visit_id: str, stage: str, now_ms: int, *, note: str = "", consent_request: str = ""
    ) -> None:
        self._db.execute(
            "UPDATE visits SET stage = ?, note = ?, consent_request = ?, updated_ms = ?"
            " WHERE id = ?",
            (stage, note, consent_request, now_ms, visit_id),
        )

    def hold_consent(self, visit_id: str, consent: HeldConsent) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO consents (visit_id, role, consent_id, subject, method,"
            " expires_ms, artefact) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                visit_id,
                consent.role,
                consent.consent_id,
                consent.subject,
                consent.method,
                consent.expires_ms,
                consent.artefact,
            ),
        )

    def update_step(
        self,
        visit_id: str,
        name: str,
        state: str,
        now_ms: int,
        *,
        result: Mapping[str, Any] | None = None,
        error_code: str = "",
        error: str = "",
        attempts: int | None = None,
        next_attempt_ms: int = 0,
    ) -> None:
        self._db.execute(
            "UPDATE steps SET state = ?, result = ?, error_code = ?, error = ?,"
            " attempts = COALESCE(?, attempts), next_attempt_ms = ?, updated_ms = ?"
            " WHERE visit_id = ? AND name = ?",
            (
                state,
                json.dumps(dict(result), ensure_ascii=False) if result is not None else "",
                error_code,
                error,
                attempts,
                next_attempt_ms,
                now_ms,
                visit_id,
                name,
            ),
        )
        self._db.execute("UPDATE visits SET updated_ms = ? WHERE id = ?", (now_ms, visit_id))

    def make_all_due(self) -> int:
        """Every queued step may be tried at once (the operator's "retry now")."""
        cursor = self._db.execute(
            "UPDATE steps SET next_attempt_ms = 0 WHERE state = ? AND next_attempt_ms > 0",
            (QUEUED,),
        )
        return cursor.rowcount

    # --- reads ---------------------------------------------------------------------------------

    def visit(self, visit_id: str) -> Visit:
        row = self._db.execute("SELECT * FROM visits WHERE id = ?", (visit_id,)).fetchone()
        if row is None:
            raise NotFound(f"no visit {visit_id}", origin=Origin.CLIENT)
        steps = self._db.execute(
            "SELECT * FROM steps WHERE visit_id = ? ORDER BY position", (visit_id,)
        ).fetchall()
        consents = self._db.execute(
            "SELECT * FROM consents WHERE visit_id = ? ORDER BY role", (visit_id,)
        ).fetchall()
        return Visit(
            id=row["id"],
            service=row["service"],
            iin=row["iin"],
            operator=row["operator"],
            created_ms=row["created_ms"],
            updated_ms=row["updated_ms"],
            stage=row["stage"],
            inputs=json.loads(row["inputs"]),
            consent_request=row["consent_request"],
            note=row["note"],
            steps=tuple(
                StepRecord(
                    name=s["name"],
                    position=s["position"],
                    agency=s["agency"],
                    state=s["state"],
                    attempts=s["attempts"],
                    next_attempt_ms=s["next_attempt_ms"],
                    error_code=s["error_code"],
                    error=s["error"],
                    result=json.loads(s["result"]) if s["result"] else None,
                    updated_ms=s["updated_ms"],
                )
                for s in steps
            ),
            consents=tuple(
                HeldConsent(
                    role=c["role"],
                    consent_id=c["consent_id"],
                    subject=c["subject"],
                    method=c["method"],
                    expires_ms=c["expires_ms"],
                    artefact=bytes(c["artefact"]),
                )
                for c in consents
            ),
        )

    def recent(self, limit: int = 20) -> list[Visit]:
        rows = self._db.execute(
            "SELECT id FROM visits ORDER BY created_ms DESC, rowid DESC LIMIT ?", (limit,)
        ).fetchall()
        return [self.visit(r["id"]) for r in rows]

    def due_visits(self, now_ms: int, limit: int = 16) -> list[str]:
        """Visits with a queued step whose next attempt has come, oldest first."""
        rows = self._db.execute(
            "SELECT visit_id, MIN(next_attempt_ms) AS due FROM steps"
            " WHERE state = ? AND next_attempt_ms <= ? GROUP BY visit_id ORDER BY due LIMIT ?",
            (QUEUED, now_ms, limit),
        ).fetchall()
        return [r["visit_id"] for r in rows]

    def next_due_ms(self) -> int | None:
        row = self._db.execute(
            "SELECT MIN(next_attempt_ms) AS due FROM steps WHERE state = ?", (QUEUED,)
        ).fetchone()
        return None if row is None or row["due"] is None else int(row["due"])

    def queue_stats(self) -> QueueStats:
        by_state = dict(
            self._db.execute(
                "SELECT state, COUNT(*) FROM steps WHERE state IN (?, ?) GROUP BY state", _IN_QUEUE
            ).fetchall()
        )
        by_agency: dict[str, int] = {}
        waiting_by_agency: dict[str, int] = {}
        for row in self._db.execute(
            "SELECT agency, state, COUNT(*) AS n FROM steps WHERE state IN (?, ?)"
            " GROUP BY agency, state",
            _IN_QUEUE,
        ):
            target = by_agency if row["state"] == QUEUED else waiting_by_agency
            target[row["agency"]] = int(row["n"])
        oldest = self._db.execute(
            "SELECT MIN(updated_ms) FROM steps WHERE state IN (?, ?)", _IN_QUEUE
        ).fetchone()[0]
        failures: dict[str, tuple[str, str, int]] = {}
        for row in self._db.execute(
            "SELECT agency, error_code, error, updated_ms FROM steps WHERE error_code != ''"
            " ORDER BY updated_ms"
        ):
            failures[row["agency"]] = (row["error_code"], row["error"], row["updated_ms"])
        partial = self._db.execute(
            "SELECT COUNT(DISTINCT visit_id) FROM steps WHERE state IN (?, ?)", _IN_QUEUE
        ).fetchone()[0]
        queued, waiting = by_state.get(QUEUED, 0), by_state.get(WAITING, 0)
        return QueueStats(
            depth=queued + waiting,
            queued=queued,
            waiting=waiting,
            by_agency=by_agency,
            waiting_by_agency=waiting_by_agency,
            oldest_ms=int(oldest or 0),
            failures=failures,
            partial_visits=int(partial),
        )

    # --- plumbing ------------------------------------------------------------------------------

    def _tx(self) -> Any:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def now_ms() -> int:
    return int(time.time() * 1000)
