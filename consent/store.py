"""Persistent state of the consent service: SQLite by default, PostgreSQL for scale.

One class, `SqlConsentStore`, holds the logic; a small backend gives it
transactions on SQLite (a file, WAL, `BEGIN IMMEDIATE`) or PostgreSQL (row and
table locks), so both are driven by the same SQL and the same test suite. Every
database call runs on one worker thread, so the gRPC event loop never blocks on
the disk.

What it keeps: citizens' phone numbers (IIN -> phone), one-time-code
challenges (only an HMAC of each code, never the code), pending consent
requests, signed consents with their state, and the revocation feed, whose
sequence numbers are allocated under a lock so that they commit in order and
without gaps — a follower reading "after N" never misses an entry.

Operations that must be atomic are: a code attempt (count, lock, single use),
completing a request (once), revoking (state + feed entry). It never signs
anything and never sees a plaintext code.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hmac
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg

from govbus.errors import (
    ConfigInvalid,
    FailedPrecondition,
    NotFound,
    Origin,
    RateLimited,
    ServiceUnavailable,
)
from govbus.pb.govbus.v1 import consent_pb2

__all__ = [
    "AttemptOutcome",
    "Challenge",
    "ConsentStore",
    "FeedEntry",
    "PendingRequest",
    "SqlConsentStore",
    "StoredConsent",
]

T = TypeVar("T")

SCHEMA_VERSION = "1"


class AttemptOutcome(enum.Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"  # wrong code, attempts left
    LOCKED_NOW = "locked-now"  # this wrong code used the last attempt
    LOCKED = "locked"  # locked before this attempt
    USED = "used"  # already answered once
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Challenge:
    """A one-time code (OTP) or signature challenge (EDS) sent to a citizen."""

    challenge_id: str
    subject: str
    kind: str  # "consent" (confirms a request) or "login" (issues a citizen token)
    method: int  # usage_pb2.ConsentMethod
    code_hash: bytes  # OTP: HMAC of the code bound to this challenge; EDS: empty
    nonce: bytes  # EDS: random bytes the citizen signs
    phone: str
    phone_masked: str
    created_ms: int
    expires_ms: int
    attempts: int = 0
    state: str = "pending"  # pending | used | locked


@dataclass(frozen=True, slots=True)
class PendingRequest:
    request_id: str
    consent_id: str
    subject: str
    grantee: str
    method: int
    terms: bytes  # serialized ConsentArtefact; for EDS exactly what the citizen signs
    challenge_id: str  # the OTP challenge, or ""
    requested_by: str
    created_ms: int
    expires_ms: int
    state: str = "pending"  # pending | confirmed


@dataclass(frozen=True, slots=True)
class StoredConsent:
    consent_id: str
    request_id: str
    subject: str
    grantee: str
    signed: bytes  # serialized SignedConsent
    not_before_ms: int
    expires_ms: int
    issued_ms: int
    revoked_ms: int = 0
    revoked_by: str = ""
    revocation_seq: int = 0

    def state(self, now_ms: int) -> int:
        if self.revoked_ms:
            return consent_pb2.CONSENT_STATE_REVOKED
        if now_ms >= self.expires_ms:
            return consent_pb2.CONSENT_STATE_EXPIRED
        return consent_pb2.CONSENT_STATE_ACTIVE


@dataclass(frozen=True, slots=True)
class FeedEntry:
    seq: int
    consent_id: str
    revoked_ms: int
    expires_ms: int


class ConsentStore(Protocol):
    """What the consent service needs from storage."""

    async def set_phone(self, subject: str, phone: str, now_ms: int) -> None: ...

    async def phone_of(self, subject: str) -> str | None: ...

    async def add_challenge(self, challenge: Challenge, *, since_ms: int, limit: int) -> None: ...

    async def get_challenge(self, challenge_id: str) -> Challenge | None: ...

    async def attempt_code(
        self, challenge_id: str, candidate_hash: bytes, now_ms: int, max_attempts: int
    ) -> AttemptOutcome: ...

    async def use_challenge(self, challenge_id: str, now_ms: int) -> AttemptOutcome: ...

    async def add_request(self, request: PendingRequest) -> None: ...

    async def get_request(self, request_id: str) -> PendingRequest | None: ...

    async def complete_request(
        self, request_id: str, consent: StoredConsent, now_ms: int
    ) -> None: ...

    async def get_consent(self, consent_id: str) -> StoredConsent | None: ...

    async def list_consents(self, subject: str) -> list[StoredConsent]: ...

    async def revoke(self, consent_id: str, now_ms: int, by: str) -> StoredConsent: ...

    async def feed(self, after_seq: int, limit: int) -> tuple[list[FeedEntry], int]: ...

    async def close(self) -> None: ...


# --- backends ------------------------------------------------------------------------


class _Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class _Backend(Protocol):
    name: str
    blob: str
    bigint: str
    for_update: str

    def transaction(self) -> contextlib.AbstractContextManager[_Tx]: ...

    def lock_feed(self, tx: _Tx) -> None: ...

    def close(self) -> None: ...


class _SqliteTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()


class _SqliteBackend:
    name = "sqlite"
    blob = "BLOB"
    bigint = "INTEGER"
    for_update = ""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise ConfigInvalid(f"cannot open consent database {path}: {exc}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Tx]:
        # IMMEDIATE takes the write lock up front: read-check-write sequences
        # (code attempts, revocations) cannot interleave with another writer.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield _SqliteTx(self._conn)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def lock_feed(self, tx: _Tx) -> None:
        """BEGIN IMMEDIATE already serialises writers."""

    def close(self) -> None:
        self._conn.close()


class _PgTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql.replace("?", "%s"), tuple(params))
        if cursor.description is None:
            return []
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


class _PostgresBackend:
    name = "postgresql"
    blob = "BYTEA"
    bigint = "BIGINT"
    for_update = " FOR UPDATE"

    def __init__(self, dsn: str) -> None:
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ServiceUnavailable(
                f"cannot connect to the consent database: {exc}", origin=Origin.CONSENT_SERVICE
            ) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Tx]:
        with self._conn.transaction():
            yield _PgTx(self._conn)

    def lock_feed(self, tx: _Tx) -> None:
        # Sequence numbers must commit in order: one revoker at a time, readers unaffected.
        tx.execute("LOCK TABLE consent_feed IN SHARE ROW EXCLUSIVE MODE")

    def close(self) -> None:
        self._conn.close()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS consent_meta (
    key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consent_phones (
    subject TEXT PRIMARY KEY, phone TEXT NOT NULL, updated_ms {bigint} NOT NULL);
CREATE TABLE IF NOT EXISTS consent_challenges (
    id TEXT PRIMARY KEY, subject TEXT NOT NULL, kind TEXT NOT NULL, method INTEGER NOT NULL,
    code_hash {blob} NOT NULL, nonce {blob} NOT NULL, phone TEXT NOT NULL,
    phone_masked TEXT NOT NULL, created_ms {bigint} NOT NULL, expires_ms {bigint} NOT NULL,
    attempts INTEGER NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS consent_challenges_subject ON consent_challenges (subject, created_ms);
CREATE INDEX IF NOT EXISTS consent_challenges_phone ON consent_challenges (phone, created_ms);
CREATE TABLE IF NOT EXISTS consent_requests (
    id TEXT PRIMARY KEY, consent_id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL,
    grantee TEXT NOT NULL, method INTEGER NOT NULL, terms {blob} NOT NULL,
    challenge_id TEXT NOT NULL, requested_by TEXT NOT NULL, created_ms {bigint} NOT NULL,
    expires_ms {bigint} NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consent_consents (
    id TEXT PRIMARY KEY, request_id TEXT NOT NULL, subject TEXT NOT NULL, grantee TEXT NOT NULL,
    signed {blob} NOT NULL, not_before_ms {bigint} NOT NULL, expires_ms {bigint} NOT NULL,
    issued_ms {bigint} NOT NULL, revoked_ms {bigint} NOT NULL, revoked_by TEXT NOT NULL,
    revocation_seq {bigint} NOT NULL);
CREATE INDEX IF NOT EXISTS consent_consents_subject ON consent_consents (subject, issued_ms);
CREATE TABLE IF NOT EXISTS consent_feed (
    seq {bigint} PRIMARY KEY, consent_id TEXT NOT NULL UNIQUE, revoked_ms {bigint} NOT NULL,
    expires_ms {bigint} NOT NULL)
"""

_CHALLENGE_COLUMNS = (
    "id, subject, kind, method, code_hash, nonce, phone, phone_masked, created_ms, expires_ms, "
    "attempts, state"
)
_REQUEST_COLUMNS = (
    "id, consent_id, subject, grantee, method, terms, challenge_id, requested_by, created_ms, "
    "expires_ms, state"
)
_CONSENT_COLUMNS = (
    "id, request_id, subject, grantee, signed, not_before_ms, expires_ms, issued_ms, revoked_ms, "
    "revoked_by, revocation_seq"
)


def _challenge(row: tuple[Any, ...]) -> Challenge:
    return Challenge(row[0], row[1], row[2], row[3], bytes(row[4]), bytes(row[5]), *row[6:])


def _request(row: tuple[Any, ...]) -> PendingRequest:
    r = row
    return PendingRequest(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6], r[7], r[8], r[9], r[10])


def _consent(row: tuple[Any, ...]) -> StoredConsent:
    r = row
    return StoredConsent(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7], r[8], r[9], r[10])


class SqlConsentStore:
    """`ConsentStore` over SQLite or PostgreSQL; open with `open_sqlite` / `open_postgres`."""

    def __init__(self, backend: _Backend, executor: ThreadPoolExecutor) -> None:
        self.backend_name = backend.name
        self._backend = backend
        self._executor = executor

    @classmethod
    async def open_sqlite(cls, path: Path) -> SqlConsentStore:
        return await cls._open(lambda: _SqliteBackend(path))

    @classmethod
    async def open_postgres(cls, dsn: str) -> SqlConsentStore:
        return await cls._open(lambda: _PostgresBackend(dsn))

    @classmethod
    async def open(
        cls, *, sqlite_path: Path | None = None, pg_dsn: str | None = None
    ) -> SqlConsentStore:
        if pg_dsn:
            return await cls.open_postgres(pg_dsn)
        if sqlite_path is None:
            raise ConfigInvalid("the consent store needs a SQLite path or a PostgreSQL DSN")
        return await cls.open_sqlite(sqlite_path)

    @classmethod
    async def _open(cls, make: Callable[[], _Backend]) -> SqlConsentStore:
        # One thread owns the connection for its whole life (SQLite requires it).
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent-store")
        loop = asyncio.get_running_loop()
        try:
            backend = await loop.run_in_executor(executor, make)
            store = cls(backend, executor)
            await store._run(store._migrate)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return store

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except (sqlite3.Error, psycopg.Error) as exc:
            raise ServiceUnavailable(
                f"consent database ({self.backend_name}) failed: {exc}",
                origin=Origin.CONSENT_SERVICE,
                retry_after=1.0,
            ) from None

    def _tx(self) -> contextlib.AbstractContextManager[_Tx]:
        return self._backend.transaction()

    async def _select(
        self, query: str, params: Sequence[Any], make: Callable[[tuple[Any, ...]], T]
    ) -> list[T]:
        """The rows of one read in its own transaction, each made into a record."""

        def run() -> list[T]:
            with self._tx() as tx:
                rows = tx.execute(query, params)
            return [make(row) for row in rows]

        return await self._run(run)

    async def _select_one(
        self, query: str, params: Sequence[Any], make: Callable[[tuple[Any, ...]], T]
    ) -> T | None:
        found = await self._select(query, params, make)
        return found[0] if found else None

    def _migrate(self) -> None:
        ddl = _SCHEMA.format(blob=self._backend.blob, bigint=self._backend.bigint)
        with self._tx() as tx:
            for statement in ddl.split(";"):
                if statement.strip():
                    tx.execute(statement)
            rows = tx.execute("SELECT value FROM consent_meta WHERE key = 'schema'")
            if not rows:
                tx.execute(
                    "INSERT INTO consent_meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
                )
            elif rows[0][0] != SCHEMA_VERSION:
                raise ConfigInvalid(
                    f"consent database has schema {rows[0][0]}, this program knows {SCHEMA_VERSION}"
                )

    async def close(self) -> None:
        await self._run(self._backend.close)
        self._executor.shutdown(wait=True)

    # --- phones --------------------------------------------------------------------

    async def set_phone(self, subject: str, phone: str, now_ms: int) -> None:
        await self.set_phones([(subject, phone)], now_ms)

    async def set_phones(self, pairs: Iterable[tuple[str, str]], now_ms: int) -> None:
        rows = list(pairs)

        def run() -> None:
            with self._tx() as tx:
                for subject, phone in rows:
                    tx.execute(
                        "INSERT INTO consent_phones (subject, phone, updated_ms) VALUES (?, ?, ?) "
                        "ON CONFLICT (subject) DO UPDATE SET phone = excluded.phone, "
                        "updated_ms = excluded.updated_ms",
                        (subject, phone, now_ms),
                    )

        await self._run(run)

    async def phone_of(self, subject: str) -> str | None:
        return await self._select_one(
            "SELECT phone FROM consent_phones WHERE subject = ?", (subject,), lambda r: str(r[0])
        )

    # --- challenges ----------------------------------------------------------------

    async def add_challenge(self, challenge: Challenge, *, since_ms: int, limit: int) -> None:
        """Store a new challenge unless `limit` codes already went to the same IIN or
        phone since `since_ms` (then `RateLimited`). Only OTP challenges count."""

        def run() -> None:
            with self._tx() as tx:
                if challenge.code_hash:
                    sent = tx.execute(
                        "SELECT COUNT(*), MIN(created_ms) FROM consent_challenges "
                        "WHERE (subject = ? OR phone = ?) AND created_ms >= ? AND code_hash <> ?",
                        (challenge.subject, challenge.phone, since_ms, b""),
                    )[0]
                    if sent[0] >= limit:
                        wait_ms = max(1000, int(sent[1]) - since_ms)
                        raise RateLimited(
                            f"{sent[0]} codes were sent for this person or phone recently; "
                            f"wait {wait_ms // 1000} s before asking for another",
                            retry_after=wait_ms / 1000,
                            origin=Origin.CONSENT_SERVICE,
                        )
                tx.execute(
                    f"INSERT INTO consent_challenges ({_CHALLENGE_COLUMNS}) "  # noqa: S608 - constant column list
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        challenge.challenge_id,
                        challenge.subject,
                        challenge.kind,
                        challenge.method,
                        challenge.code_hash,
                        challenge.nonce,
                        challenge.phone,
                        challenge.phone_masked,
                        challenge.created_ms,
                        challenge.expires_ms,
                        challenge.attempts,
                        challenge.state,
                    ),
                )

        await self._run(run)

    async def get_challenge(self, challenge_id: str) -> Challenge | None:
        return await self._select_one(
            f"SELECT {_CHALLENGE_COLUMNS} FROM consent_challenges WHERE id = ?",  # noqa: S608 - constant column list
            (challenge_id,),
            _challenge,
        )

    async def attempt_code(
        self, challenge_id: str, candidate_hash: bytes, now_ms: int, max_attempts: int
    ) -> AttemptOutcome:
        """Compare a code's hash with the stored one, counting the attempt, in one transaction.

        The outcome is committed before it is returned: a wrong code always uses
        up an attempt, whatever the caller does next.
        """

        def run() -> AttemptOutcome:  # noqa: PLR0911 - one return per outcome reads best
            with self._tx() as tx:
                rows = tx.execute(
                    "SELECT code_hash, expires_ms, attempts, state FROM consent_challenges "  # noqa: S608 - constant lock clause
                    f"WHERE id = ?{self._backend.for_update}",
                    (challenge_id,),
                )
                if not rows:
                    return AttemptOutcome.UNKNOWN
                stored, expires_ms, attempts, state = bytes(rows[0][0]), *rows[0][1:]
                if not stored:
                    return AttemptOutcome.UNKNOWN  # not an OTP challenge
                if state == "used":
                    return AttemptOutcome.USED
                if state == "locked" or attempts >= max_attempts:
                    return AttemptOutcome.LOCKED
                if now_ms >= expires_ms:
                    return AttemptOutcome.EXPIRED
                if hmac.compare_digest(stored, candidate_hash):
                    tx.execute(
                        "UPDATE consent_challenges SET state = 'used', attempts = ? WHERE id = ?",
                        (attempts + 1, challenge_id),
                    )
                    return AttemptOutcome.ACCEPTED
                attempts += 1
                new_state = "locked" if attempts >= max_attempts else "pending"
                tx.execute(
                    "UPDATE consent_challenges SET attempts = ?, state = ? WHERE id = ?",
                    (attempts, new_state, challenge_id),
                )
                return AttemptOutcome.LOCKED_NOW if new_state == "locked" else AttemptOutcome.WRONG

        return await self._run(run)

    async def use_challenge(self, challenge_id: str, now_ms: int) -> AttemptOutcome:
        """Mark a (signature) challenge answered; it can be answered only once."""

        def run() -> AttemptOutcome:
            with self._tx() as tx:
                rows = tx.execute(
                    "SELECT expires_ms, state FROM consent_challenges "  # noqa: S608 - constant lock clause
                    f"WHERE id = ?{self._backend.for_update}",
                    (challenge_id,),
                )
                if not rows:
                    return AttemptOutcome.UNKNOWN
                expires_ms, state = rows[0]
                if state == "used":
                    return AttemptOutcome.USED
                if state == "locked":
                    return AttemptOutcome.LOCKED
                if now_ms >= expires_ms:
                    return AttemptOutcome.EXPIRED
                tx.execute(
                    "UPDATE consent_challenges SET state = 'used' WHERE id = ?", (challenge_id,)
                )
                return AttemptOutcome.ACCEPTED

        return await self._run(run)

    # --- requests and consents ------------------------------------------------------

    async def add_request(self, request: PendingRequest) -> None:
        def run() -> None:
            with self._tx() as tx:
                tx.execute(
                    f"INSERT INTO consent_requests ({_REQUEST_COLUMNS}) "  # noqa: S608 - constant column list
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        request.request_id,
                        request.consent_id,
                        request.subject,
                        request.grantee,
                        request.method,
                        request.terms,
                        request.challenge_id,
                        request.requested_by,
                        request.created_ms,
                        request.expires_ms,
                        request.state,
                    ),
                )

        await self._run(run)

    async def get_request(self, request_id: str) -> PendingRequest | None:
        return await self._select_one(
            f"SELECT {_REQUEST_COLUMNS} FROM consent_requests WHERE id = ?",  # noqa: S608 - constant column list
            (request_id,),
            _request,
        )

    async def complete_request(self, request_id: str, consent: StoredConsent, now_ms: int) -> None:
        """Mark the request confirmed and store its consent, once."""

        def run() -> None:
            with self._tx() as tx:
                rows = tx.execute(
                    "SELECT state, expires_ms, consent_id FROM consent_requests "  # noqa: S608 - constant lock clause
                    f"WHERE id = ?{self._backend.for_update}",
                    (request_id,),
                )
                if not rows:
                    raise NotFound(
                        f"no consent request {request_id}", origin=Origin.CONSENT_SERVICE
                    )
                state, expires_ms, consent_id = rows[0]
                if state != "pending":
                    raise FailedPrecondition(
                        f"consent request {request_id} was already confirmed",
                        origin=Origin.CONSENT_SERVICE,
                    )
                if now_ms >= expires_ms:
                    raise FailedPrecondition(
                        f"consent request {request_id} expired before it was confirmed; "
                        "request the consent again",
                        origin=Origin.CONSENT_SERVICE,
                    )
                if consent_id != consent.consent_id:
                    raise FailedPrecondition(
                        f"consent request {request_id} is for consent {consent_id}",
                        origin=Origin.CONSENT_SERVICE,
                    )
                tx.execute(
                    "UPDATE consent_requests SET state = 'confirmed' WHERE id = ?", (request_id,)
                )
                tx.execute(
                    f"INSERT INTO consent_consents ({_CONSENT_COLUMNS}) "  # noqa: S608 - constant column list
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        consent.consent_id,
                        consent.request_id,
                        consent.subject,
                        consent.grantee,
                        consent.signed,
                        consent.not_before_ms,
                        consent.expires_ms,
                        consent.issued_ms,
                        0,
                        "",
                        0,
                    ),
                )

        await self._run(run)

    async def get_consent(self, consent_id: str) -> StoredConsent | None:
        return await self._select_one(
            f"SELECT {_CONSENT_COLUMNS} FROM consent_consents WHERE id = ?",  # noqa: S608 - constant column list
            (consent_id,),
            _consent,
        )

    async def list_consents(self, subject: str) -> list[StoredConsent]:
        return await self._select(
            f"SELECT {_CONSENT_COLUMNS} FROM consent_consents WHERE subject = ? "  # noqa: S608 - constant column list
            "ORDER BY issued_ms, id",
            (subject,),
            _consent,
        )

    async def revoke(self, consent_id: str, now_ms: int, by: str) -> StoredConsent:
        """Revoke and append to the feed; revoking twice returns the first revocation."""

        def run() -> StoredConsent:
            with self._tx() as tx:
                self._backend.lock_feed(tx)
                rows = tx.execute(
                    f"SELECT {_CONSENT_COLUMNS} FROM consent_consents "  # noqa: S608 - constant column list
                    f"WHERE id = ?{self._backend.for_update}",
                    (consent_id,),
                )
                if not rows:
                    raise NotFound(f"no consent {consent_id}", origin=Origin.CONSENT_SERVICE)
                found = _consent(rows[0])
                if found.revoked_ms:
                    return found
                seq = int(tx.execute("SELECT COALESCE(MAX(seq), 0) FROM consent_feed")[0][0]) + 1
                tx.execute(
                    "INSERT INTO consent_feed (seq, consent_id, revoked_ms, expires_ms) "
                    "VALUES (?, ?, ?, ?)",
                    (seq, consent_id, now_ms, found.expires_ms),
                )
                tx.execute(
                    "UPDATE consent_consents SET revoked_ms = ?, revoked_by = ?, "
                    "revocation_seq = ? WHERE id = ?",
                    (now_ms, by, seq, consent_id),
                )
            return replace(found, revoked_ms=now_ms, revoked_by=by, revocation_seq=seq)

        return await self._run(run)

    async def feed(self, after_seq: int, limit: int) -> tuple[list[FeedEntry], int]:
        """Entries with seq > `after_seq` (at most `limit`) and the newest seq."""

        def run() -> tuple[list[FeedEntry], int]:
            with self._tx() as tx:
                rows = tx.execute(
                    "SELECT seq, consent_id, revoked_ms, expires_ms FROM consent_feed "
                    "WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
                # Read the head after the entries: it is then never below the last entry.
                head = int(tx.execute("SELECT COALESCE(MAX(seq), 0) FROM consent_feed")[0][0])
            entries = [FeedEntry(int(r[0]), r[1], int(r[2]), int(r[3])) for r in rows]
            return entries, max(head, entries[-1].seq if entries else 0)

        return await self._run(run)

    async def raw_rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of one of the store's tables (for tests and diagnostics)."""
        allowed = {"consent_challenges", "consent_requests", "consent_consents", "consent_feed"}
        if table not in allowed:
            raise ConfigInvalid(f"unknown consent table {table}")
        return await self._select(f"SELECT * FROM {table}", (), tuple)  # noqa: S608 - table from a fixed set
