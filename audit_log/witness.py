"""The witness: the registry co-signs a security server's checkpoint only when it extends
the last one it co-signed, so a log cannot fork or rewrite its history unseen.

- `Witness.add_checkpoint` is the logic of c2sp.org/tlog-witness `add-checkpoint`:
  refuse an unknown log (`NotFound`), a checkpoint with no valid signature from the
  log's key (`SignatureInvalid`), an old size larger than the new one
  (`InvalidRequest`), an old size that is not the size last co-signed
  (`FailedPrecondition` with the witness's size in metadata `witness_size`), the
  same size with another root or a consistency proof that does not verify
  (`ProofInvalid`). Otherwise it stores the new checkpoint — a compare-and-set on
  the old size, so two racing submissions can never roll the witness back — and
  only then co-signs (c2sp.org/tlog-cosignature, see `audit_log.note`).
- `WitnessStore` keeps the latest co-signed checkpoint per origin: SQLite or
  PostgreSQL behind the same interface, plus an append-only history.
- `WitnessServicer` serves it over grpc.aio (`govbus.v1.WitnessService`); the host
  (the registry) says which logs it knows — a fixed mapping, or a callable asked on
  every request so that the set follows the host's configuration. Refusals are
  logged (a bad proof at ERROR: a fork or a rewrite shows there first), a repeated
  one once a minute.
  `submit_checkpoint` is the client a security server's log uses.

Which logs exist and their keys are the host's business; the witness never trusts a
key that came with a request.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import grpc

from audit_log import merkle
from audit_log.note import Checkpoint, NoteKey, NoteSigner, parse_note, verify_checkpoint
from audit_log.store import parse_store_url
from audit_log.store_sqlite import immediate_transaction
from audit_log.tree import ConsistencyProof
from govbus.crypto.keys import PublicKey, Signer
from govbus.errors import (
    AuditLogUnavailable,
    ConfigInvalid,
    FailedPrecondition,
    GovbusError,
    InvalidRequest,
    NotFound,
    Origin,
    ProofInvalid,
    from_rpc_error,
)
from govbus.pb.govbus.v1 import auditlog_pb2, auditlog_pb2_grpc

if TYPE_CHECKING:
    from audit_log.log import SignedCheckpoint

__all__ = [
    "MAX_PROOF_HASHES",
    "SERVICE_NAME",
    "KnownLogs",
    "SqliteWitnessStore",
    "Witness",
    "WitnessServicer",
    "WitnessState",
    "WitnessStore",
    "WitnessTarget",
    "add_witness_servicer",
    "get_witnessed",
    "open_witness_store",
    "submit_checkpoint",
]

log = logging.getLogger("govbus.witness")

MAX_PROOF_HASHES = 63
_REPEAT_EVERY = 60.0  # seconds between two log lines about the same failure
SERVICE_NAME = "govbus.v1.WitnessService"

#: The logs a witness knows: origin -> key, or a callable giving the current mapping.
KnownLogs: TypeAlias = Mapping[str, PublicKey | NoteKey] | Callable[[], Mapping[str, NoteKey]]


@dataclass(frozen=True, slots=True)
class WitnessState:
    origin: str
    size: int
    root: bytes
    note: str  # the checkpoint as submitted, with the witness's cosignature lines


class WitnessStore(Protocol):
    def latest(self, origin: str) -> WitnessState | None: ...

    def advance(self, old_size: int, state: WitnessState, now_ms: int) -> int | None:
        """Atomically replace the state of `state.origin` if it is still at `old_size`
        (or absent and `old_size` is 0). Returns None when stored, else the current size."""
        ...

    def close(self) -> None: ...


class _SqlWitnessStore(abc.ABC):
    """`WitnessStore` over one SQL connection: the compare-and-set written once, with
    `?` placeholders; a backend connects, creates the tables and supplies the parts below.
    Every driver error is `AuditLogUnavailable`."""

    #: The driver's base error class (PostgreSQL's is set on opening: psycopg loads lazily).
    Error: type[Exception]
    #: How error messages name this store.
    where: str
    # The driver's connection (sqlite3 and psycopg share the calls used here).
    _db: Any

    @abc.abstractmethod
    def _sql(self, statement: str) -> str:
        """The shared statement in this backend's placeholder style."""

    @abc.abstractmethod
    def _transaction(self, origin: str) -> AbstractContextManager[Any]:
        """A cursor inside a write transaction that no other `advance` for `origin` runs
        beside; committed on success, else rolled back."""

    def latest(self, origin: str) -> WitnessState | None:
        try:
            row = self._db.execute(
                self._sql("SELECT size, root, note FROM witness_latest WHERE origin = ?"),
                (origin,),
            ).fetchone()
        except self.Error as exc:
            raise AuditLogUnavailable(f"witness store {self.where}: {exc}") from None
        return None if row is None else WitnessState(origin, int(row[0]), bytes(row[1]), row[2])

    def advance(self, old_size: int, state: WitnessState, now_ms: int) -> int | None:
        try:
            with self._transaction(state.origin) as cur:
                row = cur.execute(
                    self._sql("SELECT size FROM witness_latest WHERE origin = ?"), (state.origin,)
                ).fetchone()
                current = 0 if row is None else int(row[0])
                if current != old_size:
                    return current
                cur.execute(
                    self._sql(
                        "INSERT INTO witness_latest (origin, size, root, note, updated_at_ms) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET size = "
                        "excluded.size, root = excluded.root, note = excluded.note, "
                        "updated_at_ms = excluded.updated_at_ms"
                    ),
                    (state.origin, state.size, state.root, state.note, now_ms),
                )
                cur.execute(
                    self._sql(
                        "INSERT INTO witness_history (origin, size, root, note, at_ms) "
                        "VALUES (?, ?, ?, ?, ?)"
                    ),
                    (state.origin, state.size, state.root, state.note, now_ms),
                )
        except self.Error as exc:
            raise AuditLogUnavailable(f"witness store {self.where}: {exc}") from None
        return None

    def close(self) -> None:
        with contextlib.suppress(self.Error):
            self._db.close()


class SqliteWitnessStore(_SqlWitnessStore):
    """The witness's state in one SQLite file (WAL, synchronous=FULL)."""

    Error = sqlite3.Error

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS witness_latest (
                    origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,
                    note TEXT NOT NULL, updated_at_ms INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS witness_history (
                    origin TEXT NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL,
                    note TEXT NOT NULL, at_ms INTEGER NOT NULL);
                """
            )
        except (sqlite3.Error, OSError) as exc:
            raise AuditLogUnavailable(f"witness store {path}: {exc}") from None
        self.path = path
        self.where = str(path)

    def _sql(self, statement: str) -> str:
        return statement

    def _transaction(self, origin: str) -> AbstractContextManager[sqlite3.Cursor]:
        # One writer at a time for the whole file: every origin is serialised.
        return immediate_transaction(self._db)


class PostgresWitnessStore(_SqlWitnessStore):
    """The witness's state in PostgreSQL (a lock per origin for the compare-and-set)."""

    def __init__(self, conninfo: str, schema: str | None = None) -> None:
        import psycopg
        from psycopg import sql

        self.Error = psycopg.Error
        self.schema = schema or "public"
        self.where = "(PostgreSQL)"
        try:
            self._db = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
            ident = sql.Identifier(self.schema)
            with self._db.transaction():
                self._db.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"govbus-witness:{schema}",)
                )
                self._db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                self._db.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
                self._db.execute(
                    """
                    CREATE TABLE IF NOT EXISTS witness_latest (
                        origin TEXT PRIMARY KEY, size BIGINT NOT NULL, root BYTEA NOT NULL,
                        note TEXT NOT NULL, updated_at_ms BIGINT NOT NULL);
                    CREATE TABLE IF NOT EXISTS witness_history (
                        origin TEXT NOT NULL, size BIGINT NOT NULL, root BYTEA NOT NULL,
                        note TEXT NOT NULL, at_ms BIGINT NOT NULL);
                    """
                )
            self._db.execute(sql.SQL("SET search_path TO {}").format(ident))
        except psycopg.Error as exc:
            raise AuditLogUnavailable(f"witness store (PostgreSQL): {exc}") from None

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    @contextlib.contextmanager
    def _transaction(self, origin: str) -> Iterator[Any]:
        with self._db.transaction(), self._db.cursor() as cur:
            # Serialise submissions for one origin, even for its very first row (there is
            # no row to lock yet); every write to the tables happens under this lock.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (origin,))
            yield cur


def open_witness_store(url: str) -> WitnessStore:
    """`sqlite:///path` (or a path) or `postgresql://…[?schema=name]`."""
    kind, target, schema = parse_store_url(url)
    if kind == "postgresql":
        return PostgresWitnessStore(target, schema)
    return SqliteWitnessStore(Path(target))


class Witness:
    """The witness logic. Thread-compatible: call it from one thread at a time.

    `logs` is a mapping fixed at construction, or a callable returning the mapping in
    force (its keys already named for their origins), asked once per request."""

    def __init__(
        self,
        name: str,
        signer: Signer,
        public_key: PublicKey,
        logs: KnownLogs,
        store: WitnessStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = NoteSigner(name, signer, public_key, cosigner=True)
        if callable(logs):
            self._logs: Callable[[], Mapping[str, NoteKey]] = logs
        else:
            fixed = {
                origin: key if isinstance(key, NoteKey) else NoteKey(origin, key)
                for origin, key in logs.items()
            }
            for origin, key in fixed.items():
                if key.name != origin:
                    raise ConfigInvalid(f"log key for {origin!r} is named {key.name!r}")
            self._logs = lambda: fixed
        self._store = store
        self._clock = clock

    def _log_key(self, origin: str) -> NoteKey:
        key = self._logs().get(origin)
        # A key under another name would verify nothing; treat it as unknown.
        if key is None or key.name != origin:
            raise NotFound(f"the witness knows no log {origin!r}", origin=Origin.REGISTRY)
        return key

    @property
    def key(self) -> NoteKey:
        """The verifier key of this witness's cosignatures."""
        return self._signer.key

    def latest(self, origin: str) -> WitnessState | None:
        self._log_key(origin)
        return self._store.latest(origin)

    def add_checkpoint(self, old_size: int, proof: Sequence[bytes], checkpoint: str | bytes) -> str:
        """Check and co-sign; returns the cosignature line(s). See the module docstring."""
        note = parse_note(checkpoint)
        origin = note.text.split("\n", 1)[0]
        key = self._log_key(origin)
        parsed, note, _ = verify_checkpoint(note, key)
        if old_size < 0 or old_size > parsed.size:
            raise InvalidRequest(
                f"old size {old_size} is larger than the checkpoint's size {parsed.size}"
            )
        if len(proof) > MAX_PROOF_HASHES:
            raise InvalidRequest(f"a consistency proof has at most {MAX_PROOF_HASHES} hashes")
        latest = self._store.latest(origin)
        current = latest.size if latest is not None else 0
        if old_size != current:
            raise _stale(origin, current)
        if latest is None:
            if proof:
                raise ProofInvalid("a consistency proof from the empty tree must be empty")
        elif old_size == parsed.size:
            if latest.root != parsed.root:
                raise ProofInvalid(
                    f"log {origin!r} signed two different roots for size {parsed.size}: a fork",
                    origin=Origin.REGISTRY,
                )
        else:
            merkle.verify_consistency(old_size, parsed.size, proof, latest.root, parsed.root)
        timestamp = int(self._clock())
        cosignature = self._signer.cosign(note.text, timestamp)
        cosigned = note.with_signatures([cosignature]).render()
        raced = self._store.advance(
            old_size, WitnessState(origin, parsed.size, parsed.root, cosigned), timestamp * 1000
        )
        if raced is not None:
            raise _stale(origin, raced)
        return cosignature.line()


def _stale(origin: str, size: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"the witness last co-signed log {origin!r} at size {size}; prove from there",
        origin=Origin.REGISTRY,
        metadata={"witness_size": str(size)},
    )


class WitnessServicer(auditlog_pb2_grpc.WitnessServiceServicer):
    """`govbus.v1.WitnessService` over a `Witness`. Store work runs on one thread of its
    own, off the event loop."""

    def __init__(self, witness: Witness, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._witness = witness
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="witness")
        self._clock = clock
        self._reported: dict[tuple[str, str], float] = {}

    def _log_refusal(self, checkpoint: str, error: GovbusError) -> None:
        # The origin comes from the request and is not authenticated yet: quote it, cut it.
        origin = repr(checkpoint.split("\n", 1)[0][:120])
        # A log that keeps failing retries on every tick: say it again once a minute.
        now, key = self._clock(), (origin, error.code)
        if now - self._reported.get(key, -_REPEAT_EVERY) < _REPEAT_EVERY:
            return
        if len(self._reported) >= 1024:  # requests choose the origin: keep this bounded
            self._reported.clear()
        self._reported[key] = now
        if isinstance(error, FailedPrecondition):
            # The normal answer to a log that restarted: it proves again from our size.
            log.info(
                "witness: log %s must prove from size %s",
                origin,
                error.metadata.get("witness_size"),
            )
        elif isinstance(error, ProofInvalid):
            log.error(
                "witness REFUSED a checkpoint of log %s: %s — its history is not the one the "
                "witness co-signed (rolled back, forked or rewritten)",
                origin,
                error,
            )
        else:
            log.warning("witness refused a checkpoint of log %s: %s", origin, error)

    async def _call(
        self, context: grpc.aio.ServicerContext, fn: Callable[..., Any], *args: Any
    ) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except GovbusError as exc:
            await exc.abort(context)

    async def AddCheckpoint(
        self, request: auditlog_pb2.AddCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> auditlog_pb2.AddCheckpointResponse:
        loop = asyncio.get_running_loop()
        try:
            lines = await loop.run_in_executor(
                self._executor,
                self._witness.add_checkpoint,
                request.old_size,
                list(request.consistency_proof),
                request.checkpoint,
            )
        except GovbusError as exc:
            self._log_refusal(request.checkpoint, exc)
            await exc.abort(context)
        return auditlog_pb2.AddCheckpointResponse(cosignatures=lines)

    async def GetCheckpoint(
        self, request: auditlog_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> auditlog_pb2.GetCheckpointResponse:
        state = await self._call(context, self._witness.latest, request.origin)
        if state is None:
            return auditlog_pb2.GetCheckpointResponse()
        return auditlog_pb2.GetCheckpointResponse(checkpoint=state.note, size=state.size)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def add_witness_servicer(server: grpc.aio.Server, witness: Witness) -> WitnessServicer:
    """Register the witness on a grpc.aio server (the registry calls this)."""
    servicer = WitnessServicer(witness)
    auditlog_pb2_grpc.add_WitnessServiceServicer_to_server(servicer, server)
    return servicer


# A grpc.aio.Channel or a WitnessServiceStub (grpc ships no types, hence Any).
WitnessTarget: TypeAlias = Any


def _stub(target: WitnessTarget) -> auditlog_pb2_grpc.WitnessServiceStub:
    if isinstance(target, auditlog_pb2_grpc.WitnessServiceStub):
        return target
    return auditlog_pb2_grpc.WitnessServiceStub(target)


async def submit_checkpoint(
    target: WitnessTarget,
    checkpoint: SignedCheckpoint | str,
    proof: ConsistencyProof,
    *,
    deadline: float = 10.0,
) -> str:
    """Submit a checkpoint with a consistency proof from the witness's last size; returns the
    witness's cosignature line(s). Refusals arrive as the typed govbus errors above."""
    note = checkpoint if isinstance(checkpoint, str) else checkpoint.note
    size = Checkpoint.parse_text(parse_note(note).text).size
    if proof.new_size != size:
        raise InvalidRequest(f"the proof leads to size {proof.new_size}, the checkpoint is {size}")
    request = auditlog_pb2.AddCheckpointRequest(
        old_size=proof.old_size, consistency_proof=list(proof.hashes), checkpoint=note
    )
    try:
        response = await _stub(target).AddCheckpoint(request, timeout=deadline)
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None
    lines: str = response.cosignatures
    return lines


async def get_witnessed(target: WitnessTarget, origin: str, *, deadline: float = 10.0) -> str:
    """The latest checkpoint the witness co-signed for `origin` ('' if none)."""
    try:
        response = await _stub(target).GetCheckpoint(
            auditlog_pb2.GetCheckpointRequest(origin=origin), timeout=deadline
        )
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None
    text: str = response.checkpoint
    return text
