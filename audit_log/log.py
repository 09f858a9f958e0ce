"""The audit log a security server writes: group-committed appends, signed checkpoints.

One `AuditLog` per security server. Appends from any number of coroutines are
queued on the event loop (a few microseconds each: serialize, enqueue, await);
one writer task drains the queue and hands each batch to a dedicated writer
thread, which extends the tree and commits the whole batch in one durable
transaction. Every `append` of the batch then returns its index. The loop keeps
serving while the disk works, and many concurrent appends share one fsync.

On open the stored tree is checked before anything is appended: record count
against the tree head, the head's right edge against the stored nodes and leaf
hashes, the newest records against their leaf hashes and positions, and the
latest signed checkpoint (its signature, and a consistency proof from it to the
stored tree). A torn or altered store raises `AuditLogCorrupt`; it is never
silently accepted, repaired or appended to. `check="full"` re-hashes every
record instead.

Checkpoints are C2SP signed notes signed with the security server's member
signing key; the log never signs two inconsistent checkpoints because it only
ever signs its own committed, append-only tree. `start_checkpointing` issues one
on an interval and submits it to the registry's witness with a consistency
proof; `witness_status` says how far the witness has co-signed and why the last
submission failed, and `stop_checkpointing` lets the host switch witness.

Records are never logged, printed or kept in memory beyond the pending queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from audit_log import merkle
from audit_log.hashing import leaf_hash
from audit_log.keys import RecordCipher
from audit_log.note import (
    Checkpoint,
    NoteKey,
    NoteSigner,
    SignedNote,
    parse_note,
    verify_checkpoint,
)
from audit_log.records import has_index, index_suffix, parse_leaf
from audit_log.store import LeafRow, LogStore, StoredCheckpoint, TreeHead, open_store
from audit_log.tree import (
    NODE_STRIDE,
    ConsistencyProof,
    Frontier,
    InclusionProof,
    consistency_proof,
    inclusion_proof,
    perfect_hash,
)
from govbus.crypto.keys import PublicKey, Signer
from govbus.crypto.pki import certificate_der, load_certificate
from govbus.errors import (
    AuditLogCorrupt,
    AuditLogUnavailable,
    ConfigInvalid,
    FailedPrecondition,
    GovbusError,
    InvalidRequest,
    KeyInvalid,
    ProofInvalid,
    SignatureInvalid,
)
from govbus.pb.govbus.v1 import audit_pb2

if TYPE_CHECKING:
    from audit_log.witness import WitnessTarget

__all__ = ["AuditLog", "LoggedRecord", "SignedCheckpoint", "WitnessStatus", "open_log"]

log = logging.getLogger("govbus.audit_log")

_sha256 = hashlib.sha256
META_ORIGIN = "origin"
META_DATA_KEY_CHECK = "data_key_check"
META_LOG_KEY = "log_key:"  # + hex key ID → DER SubjectPublicKeyInfo
META_LOG_CERTIFICATE = "log_certificate:"  # + hex key ID → DER certificate
DEFAULT_MAX_BATCH = 4096
_REPEAT_EVERY = 60.0  # seconds between two log lines about the same checkpoint failure


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint the log signed: the C2SP note text plus what it says."""

    origin: str
    size: int
    root: bytes
    note: str  # the signed note, with any witness cosignature lines
    issued_at_ms: int

    @property
    def text(self) -> str:
        """The signed note text (origin, size, root lines)."""
        return parse_note(self.note).text


@dataclass(frozen=True, slots=True)
class WitnessStatus:
    """Where the witness stands on this log, as this process has seen it."""

    witnessed_size: int | None = None  # size of the last checkpoint the witness co-signed
    cosigned_at_ms: int = 0  # when that cosignature arrived (0: not in this process)
    last_error: GovbusError | None = None  # why the latest submission failed; None after success
    failures: tuple[tuple[str, int], ...] = ()  # (error code, count) of failed submissions


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    index: int
    leaf: bytes  # the exact bytes hashed into the tree
    record: audit_pb2.ExchangeRecord

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf)


@dataclass(slots=True)
class _Pending:
    data: bytes
    request_id: str
    subject: bytes | None
    logged_at_ms: int
    certificate: tuple[bytes, bytes] | None
    future: asyncio.Future[int]


def _fail(batch: Sequence[_Pending], exc: Exception) -> None:
    if isinstance(exc, GovbusError):
        log.error("audit log append failed: %s", exc)
        error: GovbusError = exc
    else:
        log.error("audit log append failed", exc_info=exc)
        error = AuditLogUnavailable(f"audit log append failed: {type(exc).__name__}: {exc}")
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _public_key(signer: Signer, public_key: PublicKey | None, cert: x509.Certificate | None) -> Any:
    if public_key is not None:
        return public_key
    if cert is not None:
        return cert.public_key()
    found = getattr(signer, "public_key", None)
    if found is None:
        raise ConfigInvalid(
            "the log's signer exposes no public key: pass public_key= or certificate="
        )
    return found


class AuditLog:
    """An open log. Build it with `open_log`; do not construct directly."""

    def __init__(
        self,
        *,
        store: LogStore,
        reader: LogStore,
        executor: ThreadPoolExecutor,
        reader_executor: ThreadPoolExecutor,
        frontier: Frontier,
        note_signer: NoteSigner,
        latest: StoredCheckpoint | None,
        cipher: RecordCipher | None,
        store_bodies: bool,
        max_batch: int,
        clock: Callable[[], float],
    ) -> None:
        self.origin = note_signer.name
        self._store = store
        self._reader = reader
        self._executor = executor
        self._reader_executor = reader_executor
        self._frontier = frontier
        self._signer = note_signer
        self._latest = latest
        self._cipher = cipher
        self._store_bodies = store_bodies
        self._max_batch = max_batch
        self._clock = clock
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._closed = False
        self._known_certificates: set[bytes] = set()
        self._witnessed_size: int | None = None
        self._witness_status = WitnessStatus()
        self._reported = ("", 0.0)  # the failure logged last, and when (monotonic)
        self._checkpointing: asyncio.Task[None] | None = None
        self._stop_checkpointing = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._writer = self._loop.create_task(self._run_writer(), name="audit-log-writer")
        self.commits = 0  # batches committed (for metrics and the benchmark)

    # --- state --------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of durable records."""
        return self._frontier.size

    @property
    def root(self) -> bytes:
        return self._frontier.root()

    @property
    def log_key(self) -> NoteKey:
        """The verifier key of this log's checkpoints."""
        return self._signer.key

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def witness_status(self) -> WitnessStatus:
        return self._witness_status

    # --- appends ------------------------------------------------------------------------

    async def append(
        self,
        record: audit_pb2.ExchangeRecord,
        *,
        header: bytes | None = None,
        body: bytes | None = None,
        signer_certificate: bytes | None = None,
    ) -> int:
        """Append one record; returns its index once it is durable.

        `header` (the signed envelope header bytes) is sealed into
        `header_ciphertext` under the data key, bound to `message_hash`; `body` is
        sealed into `body_ciphertext` only when the log stores bodies. Both fill the
        caller's record, which must not be changed afterwards. `signer_certificate`
        (DER) is kept beside the log so that evidence can be exported; its SHA-256
        must be the record's `signer_certificate_sha256`.
        """
        if self._closing:
            raise AuditLogUnavailable("audit log is closed; the record was not logged")
        if not record.request_id:
            raise InvalidRequest("audit record has no request_id")
        if record.HasField("log_index"):
            raise InvalidRequest("audit record's log_index is set by the log, not the caller")
        subject = record.subject_pseudonym
        if subject and len(subject) != 32:
            raise InvalidRequest("subject_pseudonym must be a 32-byte HMAC-SHA256, never an IIN")
        if header is not None or (body is not None and self._store_bodies):
            self._seal(record, header, body)
        if not record.logged_at_ms:
            record.logged_at_ms = int(self._clock() * 1000)
        certificate: tuple[bytes, bytes] | None = None
        if signer_certificate is not None:
            fingerprint = _sha256(signer_certificate).digest()
            if fingerprint != record.signer_certificate_sha256:
                raise InvalidRequest("signer_certificate does not match signer_certificate_sha256")
            if fingerprint not in self._known_certificates:
                certificate = (fingerprint, signer_certificate)
        future: asyncio.Future[int] = self._loop.create_future()
        self._pending.append(
            _Pending(
                record.SerializeToString(deterministic=True),
                record.request_id,
                subject or None,
                record.logged_at_ms,
                certificate,
                future,
            )
        )
        if not self._wake.is_set():
            self._wake.set()
        return await future

    def _seal(
        self, record: audit_pb2.ExchangeRecord, header: bytes | None, body: bytes | None
    ) -> None:
        if self._cipher is None:
            raise ConfigInvalid("the audit log has no data key: cannot seal header or body")
        if header is not None:
            record.header_ciphertext = self._cipher.seal(header, record.message_hash)
        if body is not None and self._store_bodies:
            record.body_ciphertext = self._cipher.seal(body, record.body_sha256)

    async def _run_writer(self) -> None:
        loop = self._loop
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                first = await loop.run_in_executor(self._executor, self._commit, batch)
            except Exception as exc:  # noqa: BLE001 - every failure must reach the callers
                _fail(batch, exc)
            else:
                self.commits += 1
                for offset, item in enumerate(batch):
                    if not item.future.done():
                        item.future.set_result(first + offset)
                    if item.certificate is not None:
                        self._known_certificates.add(item.certificate[0])

    def _commit(self, batch: Sequence[_Pending]) -> int:
        """Writer thread: extend the tree by `batch` and commit it in one transaction."""
        frontier = self._frontier.copy()
        start = frontier.size
        rows: list[LeafRow] = []
        nodes: list[tuple[int, int, bytes]] = []
        certificates: dict[bytes, bytes] = {}
        append_leaf = frontier.append
        for offset, item in enumerate(batch):
            index = start + offset
            leaf = item.data + index_suffix(index)
            digest = _sha256(b"\x00" + leaf).digest()
            append_leaf(digest, nodes)
            rows.append(
                LeafRow(index, digest, leaf, item.request_id, item.subject, item.logged_at_ms)
            )
            if item.certificate is not None:
                certificates[item.certificate[0]] = item.certificate[1]
        head = TreeHead(frontier.size, frontier.root(), frontier.to_bytes())
        try:
            self._store.append(start, rows, nodes, head, list(certificates.items()))
        except GovbusError:
            # A commit that failed while being acknowledged may still have landed:
            # look before telling the callers it did not.
            try:
                stored = self._store.read_head()
            except GovbusError:
                stored = None
            if stored != head:
                raise
        self._frontier = frontier
        return start

    # --- checkpoints --------------------------------------------------------------------

    async def checkpoint(self) -> SignedCheckpoint:
        """A signed checkpoint of the current (durable) tree; stored before it is returned."""
        if self._closed:
            raise AuditLogUnavailable("audit log is closed")
        stored = await self._loop.run_in_executor(self._executor, self._issue_checkpoint)
        return self._signed(stored)

    def _issue_checkpoint(self) -> StoredCheckpoint:
        size, root = self._frontier.size, self._frontier.root()
        if self._latest is not None and self._latest.size == size:
            return self._latest
        text = Checkpoint(self.origin, size, root).text()
        note = SignedNote(text, (self._signer.sign(text),)).render()
        stored = StoredCheckpoint(size, root, note, int(self._clock() * 1000))
        self._store.add_checkpoint(stored)
        self._latest = stored
        return stored

    def _signed(
        self, stored: StoredCheckpoint, cosignatures: Sequence[str] = ()
    ) -> SignedCheckpoint:
        note = stored.note + "".join(cosignatures)
        return SignedCheckpoint(self.origin, stored.size, stored.root, note, stored.issued_at_ms)

    async def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The newest checkpoint, with the witness cosignatures received for it."""
        latest = self._latest
        if latest is None:
            return None
        cosigs = await self._read(self._reader.cosignatures, latest.size)
        return self._signed(latest, [c.line for c in cosigs])

    def start_checkpointing(
        self,
        interval: float,
        witness: WitnessTarget | None = None,
        *,
        witness_key: NoteKey | None = None,
    ) -> asyncio.Task[None]:
        """Issue a checkpoint every `interval` seconds while the log grows, and submit it to
        `witness` (a gRPC channel or WitnessService stub) when given. Failures are logged
        and retried on the next tick; the task ends when the log closes."""
        if interval <= 0:
            raise ConfigInvalid("checkpoint interval must be positive")
        if self._closing:
            raise AuditLogUnavailable("audit log is closed")
        if self._checkpointing is not None and not self._checkpointing.done():
            raise ConfigInvalid("checkpointing is already running for this log")
        self._checkpointing = self._loop.create_task(
            self._checkpoint_loop(interval, witness, witness_key), name="audit-log-checkpoints"
        )
        return self._checkpointing

    async def stop_checkpointing(self) -> None:
        """Stop the checkpoint task after its current round (the log stays open), so that
        it can be started again, e.g. with another witness."""
        task = self._checkpointing
        if task is None:
            return
        self._stop_checkpointing.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._checkpointing = None
        if not self._closing:
            self._stop_checkpointing.clear()

    async def _checkpoint_loop(
        self, interval: float, witness: WitnessTarget | None, witness_key: NoteKey | None
    ) -> None:
        while not self._stop_checkpointing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_checkpointing.wait(), interval)
            if self._stop_checkpointing.is_set():
                return
            try:
                if witness is None:
                    await self.checkpoint()
                elif self._witnessed_size != self.size or self._latest is None:
                    await self.submit_to_witness(witness, witness_key=witness_key)
            except GovbusError as exc:
                if witness is not None:
                    self._witness_failed(exc)
                self._report(exc, witness is not None)

    def _report(self, error: GovbusError, witnessed: bool) -> None:
        # A failing submission is retried on every tick: say it again once a minute.
        # Sizes in the message change as the log grows; the failure stays the same.
        now, what = time.monotonic(), re.sub(r"\d+", "#", str(error))
        if what == self._reported[0] and now - self._reported[1] < _REPEAT_EVERY:
            log.debug("audit checkpoint of %s not completed: %s", self.origin, error)
            return
        self._reported = (what, now)
        if witnessed and isinstance(error, ProofInvalid):
            log.error(
                "audit checkpoint of %s REFUSED: %s — the witness co-signed another history "
                "of this log (restored from a backup, forked or rewritten); an operator must "
                "investigate",
                self.origin,
                error,
            )
        else:
            log.warning("audit checkpoint of %s not completed: %s", self.origin, error)

    def _witness_failed(self, error: GovbusError) -> None:
        status = self._witness_status
        failures = dict(status.failures)
        failures[error.code] = failures.get(error.code, 0) + 1
        self._witness_status = WitnessStatus(
            status.witnessed_size, status.cosigned_at_ms, error, tuple(sorted(failures.items()))
        )

    async def submit_to_witness(
        self, witness: WitnessTarget, *, witness_key: NoteKey | None = None
    ) -> SignedCheckpoint:
        """Issue a checkpoint, prove it consistent with the witness's last one, and store the
        witness's cosignature. Returns the cosigned checkpoint."""
        from audit_log.witness import submit_checkpoint

        checkpoint = await self.checkpoint()
        old = self._witnessed_size
        if old is None:
            old = await self._last_cosigned_size()
        lines = ""
        for attempt in range(2):
            if old > checkpoint.size:
                raise ProofInvalid(
                    f"the witness has seen this log at size {old}, larger than the log's "
                    f"{checkpoint.size}: records were lost or the log was rolled back"
                )
            proof = await self.consistency_proof(old, checkpoint.size)
            try:
                lines = await submit_checkpoint(witness, checkpoint, proof)
            except FailedPrecondition as exc:
                # The witness co-signed another size last (this log restarted, or another
                # checkpoint got there first): prove from the size it names, once.
                witness_size = exc.metadata.get("witness_size", "")
                if attempt or not witness_size.isdigit():
                    raise
                old = int(witness_size)
                continue
            break
        if witness_key is not None:
            cosigned = checkpoint.note + lines
            verify_checkpoint(cosigned, self.log_key, [witness_key])
        await self._loop.run_in_executor(
            self._executor, self._store_cosignatures, checkpoint, lines
        )
        self._witnessed_size = checkpoint.size
        if self._witness_status.last_error is not None:
            log.info("audit checkpoints of %s are co-signed again", self.origin)
        self._reported = ("", 0.0)
        self._witness_status = WitnessStatus(
            checkpoint.size, int(self._clock() * 1000), None, self._witness_status.failures
        )
        return SignedCheckpoint(
            checkpoint.origin,
            checkpoint.size,
            checkpoint.root,
            checkpoint.note + lines,
            checkpoint.issued_at_ms,
        )

    def _store_cosignatures(self, checkpoint: SignedCheckpoint, lines: str) -> None:
        from audit_log.store import Cosignature

        now = int(self._clock() * 1000)
        for signature in parse_note("x\n\n" + lines).signatures:
            self._store.add_cosignature(
                Cosignature(checkpoint.size, signature.name, signature.line(), now)
            )

    async def _last_cosigned_size(self) -> int:
        def find() -> int:
            for stored in reversed(self._reader.checkpoints()):
                if self._reader.cosignatures(stored.size):
                    return stored.size
            return 0

        size: int = await self._read(find)
        return size

    # --- reads --------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise AuditLogUnavailable("audit log is closed")
        return await self._loop.run_in_executor(self._reader_executor, fn, *args)

    async def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """Proof that record `index` is in the tree of `size` (default: the current size)."""
        size = self.size if size is None else size
        if size > self.size:
            raise InvalidRequest(f"the log has {self.size} records, not {size}")
        result: InclusionProof = await self._read(inclusion_proof, self._reader, index, size)
        return result

    async def consistency_proof(
        self, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        new_size = self.size if new_size is None else new_size
        if new_size > self.size:
            raise InvalidRequest(f"the log has {self.size} records, not {new_size}")
        result: ConsistencyProof = await self._read(
            consistency_proof, self._reader, old_size, new_size
        )
        return result

    async def get(self, indexes: Sequence[int]) -> list[LoggedRecord]:
        rows = await self._read(self._reader.records, list(indexes))
        return [LoggedRecord(i, leaf, parse_leaf(leaf, i)) for i, leaf in rows]

    async def find_by_request(self, request_id: str) -> list[LoggedRecord]:
        rows = await self._read(self._reader.find_by_request, request_id)
        return [LoggedRecord(i, leaf, parse_leaf(leaf, i)) for i, leaf in rows]

    async def find_by_subject(
        self, pseudonym: bytes, from_ms: int, to_ms: int, *, limit: int = 1000
    ) -> list[LoggedRecord]:
        """Records about one subject (by pseudonym) logged in [from_ms, to_ms), oldest first."""
        if len(pseudonym) != 32:
            raise InvalidRequest("subject pseudonym must be 32 bytes (HMAC-SHA256 of the IIN)")
        if from_ms > to_ms or limit <= 0:
            raise InvalidRequest("time window must have from <= to and a positive limit")
        rows = await self._read(self._reader.find_by_subject, pseudonym, from_ms, to_ms, limit)
        return [LoggedRecord(i, leaf, parse_leaf(leaf, i)) for i, leaf in rows]

    # --- closing ------------------------------------------------------------------------

    async def close(self) -> None:
        """Flush every pending append, stop checkpointing, close the stores."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._stop_checkpointing.set()
        await self._writer
        if self._checkpointing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointing
        self._closed = True
        await self._loop.run_in_executor(self._executor, self._store.close)
        await self._loop.run_in_executor(self._reader_executor, self._reader.close)
        self._executor.shutdown(wait=False)
        self._reader_executor.shutdown(wait=False)

    async def __aenter__(self) -> AuditLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- opening and checking ---------------------------------------------------------------


def _stored_key(store: LogStore, origin: str, key_id: bytes) -> NoteKey | None:
    """A key this log signed with earlier (kept so that key rotation keeps old checkpoints
    checkable), by its note key ID."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    der = store.get_meta(META_LOG_KEY + key_id.hex())
    if der is None:
        return None
    try:
        key = load_der_public_key(der)
        return NoteKey(origin, key)  # type: ignore[arg-type]
    except (ValueError, GovbusError):
        raise AuditLogCorrupt(f"the stored log key {key_id.hex()} is damaged") from None


def check_store(
    store: LogStore, keys: Sequence[NoteKey], *, full: bool = False
) -> tuple[Frontier, StoredCheckpoint | None]:
    """Check a store's tree state (see the module docstring); returns the committed right
    edge and the latest checkpoint. Raises `AuditLogCorrupt` saying what is wrong."""
    head = store.read_head()
    count, low, high = store.bounds()
    if head is None:
        if count:
            raise AuditLogCorrupt(f"the store holds {count} records but no tree head")
        frontier = Frontier()
    else:
        if count != head.size or (count and (low != 0 or high != count - 1)):
            raise AuditLogCorrupt(
                f"the tree head says {head.size} records, the store holds {count} "
                f"(indexes {low}..{high}): records were deleted or added outside the log"
            )
        frontier = Frontier.from_bytes(head.size, head.frontier)
        if frontier.root() != head.root:
            raise AuditLogCorrupt("the stored tree head's root does not match its right edge")
    checkpoints = store.checkpoints()
    if full:
        from audit_log.auditor import verify_store

        known = list(keys)
        for stored in checkpoints:
            for signature in parse_note(stored.note).signatures:
                if not any(k.matches(signature) for k in known):
                    older = _stored_key(store, keys[0].name, signature.key_id)
                    if older is not None:
                        known.append(older)
        verify_store(store, known, check_nodes=True)
    else:
        _check_edge(store, frontier)
    latest = checkpoints[-1] if checkpoints else None
    if latest is not None:
        _check_checkpoint(store, keys, latest, frontier)
    return frontier, latest


def _check_edge(store: LogStore, frontier: Frontier) -> None:
    """The right edge against stored nodes, and the newest records against their hashes."""
    start = 0
    size = frontier.size
    # The edge's subtrees are the set bits of the size, largest first.
    levels = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
    for level, expected in zip(levels, frontier.hashes, strict=True):
        if perfect_hash(store, level, start >> level) != expected:
            raise AuditLogCorrupt(
                f"stored tree nodes or leaf hashes of records {start}..{start + (1 << level) - 1} "
                "do not match the tree head"
            )
        start += 1 << level
    tail = max(0, size - (size % (1 << NODE_STRIDE) or 1 << NODE_STRIDE))
    for index, stored_hash, leaf in store.scan(tail, size):
        if leaf_hash(leaf) != stored_hash:
            raise AuditLogCorrupt(f"record {index} does not match its leaf hash: altered")
        if not has_index(leaf, index):
            raise AuditLogCorrupt(f"record found at position {index} was written elsewhere")


def _check_checkpoint(
    store: LogStore, keys: Sequence[NoteKey], latest: StoredCheckpoint, frontier: Frontier
) -> None:
    candidates = list(keys)
    origin = keys[0].name
    try:
        note = parse_note(latest.note)
    except GovbusError:
        raise AuditLogCorrupt(
            f"the stored checkpoint at size {latest.size} is not a note"
        ) from None
    for signature in note.signatures:
        if not any(k.matches(signature) for k in candidates):
            older = _stored_key(store, origin, signature.key_id)
            if older is not None:
                candidates.append(older)
    for key in candidates:
        try:
            checkpoint, _, _ = verify_checkpoint(note, key)
            break
        except (SignatureInvalid, GovbusError):
            continue
    else:
        raise AuditLogCorrupt(
            f"the stored checkpoint at size {latest.size} is not signed by this log's key"
        )
    if (checkpoint.size, checkpoint.root) != (latest.size, latest.root):
        raise AuditLogCorrupt(f"the stored checkpoint at size {latest.size} was altered")
    if checkpoint.size > frontier.size:
        raise AuditLogCorrupt(
            f"the log holds {frontier.size} records but signed a checkpoint at size "
            f"{checkpoint.size}: records {frontier.size}..{checkpoint.size - 1} were lost"
        )
    proof = consistency_proof(store, checkpoint.size, frontier.size)
    try:
        merkle.verify_consistency(
            checkpoint.size, frontier.size, proof.hashes, checkpoint.root, frontier.root()
        )
    except ProofInvalid as exc:
        raise AuditLogCorrupt(
            f"the stored tree is not consistent with the log's checkpoint at size "
            f"{checkpoint.size}: records before {checkpoint.size} were changed ({exc.message})"
        ) from None


def _prepare(
    url: str,
    note_signer: NoteSigner,
    cipher: RecordCipher | None,
    certificate: bytes | None,
    check: str,
) -> tuple[LogStore, LogStore, Frontier, StoredCheckpoint | None]:
    store = open_store(url, create=True)
    try:
        origin = store.get_meta(META_ORIGIN)
        if origin is None:
            store.set_meta(META_ORIGIN, note_signer.name.encode())
        elif origin.decode() != note_signer.name:
            raise ConfigInvalid(
                f"this audit store belongs to log {origin.decode()!r}, not {note_signer.name!r}"
            )
        if cipher is not None:
            known = store.get_meta(META_DATA_KEY_CHECK)
            if known is None:
                store.set_meta(META_DATA_KEY_CHECK, cipher.check)
            elif known != cipher.check:
                raise KeyInvalid("the data key is not the one this audit log was created with")
        key_id = note_signer.key.key_id.hex()
        if store.get_meta(META_LOG_KEY + key_id) is None:
            store.set_meta(META_LOG_KEY + key_id, _spki(note_signer.key.public_key))
        if certificate is not None and store.get_meta(META_LOG_CERTIFICATE + key_id) is None:
            store.set_meta(META_LOG_CERTIFICATE + key_id, certificate)
        frontier, latest = check_store(store, [note_signer.key], full=check == "full")
        reader = open_store(url, create=False)
    except BaseException:
        store.close()
        raise
    return store, reader, frontier, latest


async def open_log(
    url: str,
    *,
    signer: Signer,
    origin: str,
    store_bodies: bool = False,
    public_key: PublicKey | None = None,
    certificate: x509.Certificate | bytes | None = None,
    cipher: RecordCipher | None = None,
    check: Literal["quick", "full"] = "quick",
    max_batch: int = DEFAULT_MAX_BATCH,
    clock: Callable[[], float] = time.time,
) -> AuditLog:
    """Open (creating if new) the audit log at `url` and check it.

    `signer` signs checkpoints under key name `origin`; its public key comes from
    `public_key`, `certificate` or the signer itself. `cipher` (the data key) seals
    headers and, with `store_bodies`, bodies. `max_batch=1` turns group commit off
    (one transaction per record: the baseline the benchmark compares against).
    """
    if store_bodies and cipher is None:
        raise ConfigInvalid("store_bodies needs a data key (cipher=RecordCipher(key))")
    if max_batch < 1:
        raise ConfigInvalid("max_batch must be at least 1")
    if check not in ("quick", "full"):
        raise ConfigInvalid("check must be 'quick' or 'full'")
    cert = load_certificate(certificate) if isinstance(certificate, bytes) else certificate
    note_signer = NoteSigner(origin, signer, _public_key(signer, public_key, cert))
    cert_der = certificate_der(cert) if cert is not None else None
    executor = ThreadPoolExecutor(1, thread_name_prefix="audit-writer")
    reader_executor = ThreadPoolExecutor(1, thread_name_prefix="audit-reader")
    loop = asyncio.get_running_loop()
    try:
        store, reader, frontier, latest = await loop.run_in_executor(
            executor, _prepare, url, note_signer, cipher, cert_der, check
        )
    except BaseException:
        executor.shutdown(wait=False)
        reader_executor.shutdown(wait=False)
        raise
    audit = AuditLog(
        store=store,
        reader=reader,
        executor=executor,
        reader_executor=reader_executor,
        frontier=frontier,
        note_signer=note_signer,
        latest=latest,
        cipher=cipher,
        store_bodies=store_bodies,
        max_batch=max_batch,
        clock=clock,
    )
    return audit
