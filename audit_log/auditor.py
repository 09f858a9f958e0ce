"""What an auditor does with a log: verify it whole, prove records, find who accessed whom.

Everything here reads a `LogStore` and checks it against keys the auditor
trusts; it depends only on `govbus` and `audit_log`, so it runs on an auditor's
machine with a copy of the database and no server.

`verify_store` streams the log once, in index order, and says *where* it first
fails:

- a missing index (a deleted record) or records beyond the tree head;
- a record whose bytes do not match its stored leaf hash (an altered record);
- a record whose embedded `log_index` is not its position (a moved record);
- a stored tree node that does not match the records under it;
- a signed checkpoint whose root the records do not reproduce (named with the
  last checkpoint that still matched, so the change lies between the two);
- fewer records than a signed checkpoint covers (a truncated log).

It hashes with hashlib and never parses a record unless asked to, so a million
records verify in seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from audit_log import merkle
from audit_log.keys import Pseudonymizer
from audit_log.note import Checkpoint, NoteKey, SignedNote, verify_checkpoint
from audit_log.records import index_suffix, parse_leaf
from audit_log.store import LogStore, StoredCheckpoint, TreeHead
from audit_log.tree import (
    NODE_STRIDE,
    Frontier,
    InclusionProof,
    consistency_proof,
    inclusion_proof,
)
from govbus.errors import AuditLogCorrupt, GovbusError, InvalidRequest, NotFound, SignatureInvalid
from govbus.pb.govbus.v1 import audit_pb2

__all__ = [
    "AccessRow",
    "RecordProof",
    "VerifyReport",
    "prove_consistency",
    "prove_request",
    "trusted_checkpoints",
    "verify_store",
    "who_accessed",
]

Progress = Callable[[int, int], None]
_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class VerifyReport:
    records: int
    root: bytes
    checkpoint: Checkpoint | None  # the newest checkpoint the records reproduce
    checkpoints_checked: int
    cosigned_by: tuple[str, ...] = ()
    uncovered: int = 0  # records after the newest checkpoint (not yet signed)


@dataclass(frozen=True, slots=True)
class _Target:
    size: int
    root: bytes
    source: str


def trusted_checkpoints(
    store: LogStore, log_keys: Sequence[NoteKey]
) -> list[tuple[StoredCheckpoint, Checkpoint]]:
    """The checkpoints stored with the log, each checked against the trusted keys."""
    out = []
    for stored in store.checkpoints():
        checkpoint = _verify_with_any(stored.note, log_keys, f"stored checkpoint {stored.size}")
        if (checkpoint.size, checkpoint.root) != (stored.size, stored.root):
            raise AuditLogCorrupt(f"stored checkpoint at size {stored.size} was altered")
        out.append((stored, checkpoint))
    return out


def _verify_with_any(
    note: str | SignedNote, keys: Sequence[NoteKey], what: str, witnesses: Sequence[NoteKey] = ()
) -> Checkpoint:
    last: GovbusError | None = None
    for key in keys:
        try:
            checkpoint, _, _ = verify_checkpoint(note, key, witnesses)
            return checkpoint
        except SignatureInvalid as exc:
            last = exc
    raise AuditLogCorrupt(f"{what} is not validly signed by the log's key: {last}")


def verify_store(
    store: LogStore,
    log_keys: NoteKey | Sequence[NoteKey],
    *,
    checkpoint: str | None = None,
    witnesses: Sequence[NoteKey] = (),
    check_nodes: bool = True,
    parse: bool = False,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify the whole log against its signed checkpoints (and `checkpoint`, a signed
    note the auditor holds, which must then be cosigned by one of `witnesses` if any are
    given). Raises `AuditLogCorrupt` saying where it first fails."""
    keys = [log_keys] if isinstance(log_keys, NoteKey) else list(log_keys)
    verifier = _StoreVerifier(store, keys, check_nodes=check_nodes, parse=parse)
    verifier.add_targets(checkpoint, witnesses)
    return verifier.run(progress)


class _StoreVerifier:
    def __init__(
        self, store: LogStore, keys: list[NoteKey], *, check_nodes: bool, parse: bool
    ) -> None:
        self.store = store
        self.keys = keys
        self.check_nodes = check_nodes
        self.parse = parse
        self.targets: dict[int, _Target] = {}
        self.external: Checkpoint | None = None
        self.cosigned: tuple[str, ...] = ()
        self.matched: _Target | None = None
        self.checked = 0
        self.nodes: dict[tuple[int, int], bytes] = {}

    def add_targets(self, checkpoint: str | None, witnesses: Sequence[NoteKey]) -> None:
        for stored, _ in trusted_checkpoints(self.store, self.keys):
            self.targets[stored.size] = _Target(stored.size, stored.root, "stored checkpoint")
        if checkpoint is None:
            return
        external, _, names = verify_checkpoint(checkpoint, self.keys[0], witnesses)
        if witnesses and not names:
            raise SignatureInvalid(
                f"the checkpoint at size {external.size} carries no cosignature from "
                f"{', '.join(w.name for w in witnesses)}: the witness never accepted it"
            )
        self.external, self.cosigned = external, tuple(names)
        known = self.targets.get(external.size)
        if known is not None and known.root != external.root:
            raise AuditLogCorrupt(
                f"the checkpoint given and the one stored at size {external.size} have "
                "different roots: the log signed two views (a fork)"
            )
        self.targets[external.size] = _Target(external.size, external.root, "given checkpoint")

    def _load_nodes(self, total: int) -> None:
        level = NODE_STRIDE
        while (1 << level) <= total:
            for index, value in self.store.nodes(level):
                self.nodes[(level, index)] = value
            level += NODE_STRIDE

    def run(self, progress: Progress | None) -> VerifyReport:
        head = self.store.read_head()
        count, _, high = self.store.bounds()
        total = max([count, (high or 0) + 1, head.size if head else 0, *self.targets])
        if self.check_nodes:
            self._load_nodes(total)
        frontier = Frontier()
        completed: list[tuple[int, int, bytes]] = []
        step = 1 << 14
        for index, stored_hash, leaf in self.store.scan(0, 1 << 62):
            digest = self._check_record(frontier.size, index, stored_hash, leaf)
            frontier.append(digest, completed)
            if completed:
                self._check_nodes(completed)
                completed.clear()
            target = self.targets.get(frontier.size)
            if target is not None:
                self._check_target(target, frontier.root())
            if progress is not None and frontier.size % step == 0:
                progress(frontier.size, total)
        if progress is not None:
            progress(frontier.size, total)
        return self._finish(frontier, head)

    def _check_record(self, expected: int, index: int, stored_hash: bytes, leaf: bytes) -> bytes:
        if index != expected:
            raise AuditLogCorrupt(
                f"record {expected} is missing (deleted): the next stored record is {index}"
            )
        digest = _sha256(b"\x00" + leaf).digest()
        if digest != stored_hash:
            raise AuditLogCorrupt(f"record {index} was altered: it does not match its leaf hash")
        if not leaf.endswith(index_suffix(index)):
            found = _claimed_index(leaf)
            raise AuditLogCorrupt(
                f"record at position {index} belongs at position {found}: records were moved"
            )
        if self.parse:
            parse_leaf(leaf, index)
        return digest

    def _check_nodes(self, completed: list[tuple[int, int, bytes]]) -> None:
        for level, node_index, value in completed:
            stored = self.nodes.pop((level, node_index), None)
            if self.check_nodes and stored != value:
                first = node_index << level
                state = "is missing" if stored is None else "does not match them"
                raise AuditLogCorrupt(
                    f"stored tree node over records {first}..{first + (1 << level) - 1} {state}"
                )

    def _check_target(self, target: _Target, root: bytes) -> None:
        self.checked += 1
        if root != target.root:
            matched = self.matched
            after = (
                f" (records 0..{matched.size - 1} match the {matched.source} at size "
                f"{matched.size})"
                if matched
                else ""
            )
            raise AuditLogCorrupt(
                f"records 0..{target.size - 1} do not reproduce the {target.source} at size "
                f"{target.size}: a record before {target.size} was changed, removed or "
                f"reordered{after}"
            )
        self.matched = target

    def _finish(self, frontier: Frontier, head: TreeHead | None) -> VerifyReport:
        size = frontier.size
        beyond = [t for t in self.targets.values() if t.size > size]
        if beyond:
            top = max(beyond, key=lambda t: t.size)
            raise AuditLogCorrupt(
                f"the log is truncated: the {top.source} covers {top.size} records, the store "
                f"holds {size}; records {size}..{top.size - 1} are missing"
            )
        root = frontier.root()
        if head is not None and (head.size, head.root) != (size, root):
            raise AuditLogCorrupt(
                f"the tree head (size {head.size}) does not match the {size} stored records"
            )
        if self.check_nodes and self.nodes:
            level, node_index = min(self.nodes)
            raise AuditLogCorrupt(
                f"stored tree node at level {level} index {node_index} covers records that "
                "do not exist"
            )
        matched = self.matched
        newest = self.external if self.external is not None and matched is not None else None
        if newest is None and matched is not None:
            newest = Checkpoint(self.keys[0].name, matched.size, matched.root)
        uncovered = size - (matched.size if matched else 0)
        return VerifyReport(size, root, newest, self.checked, self.cosigned, uncovered)


def _claimed_index(leaf: bytes) -> str:
    try:
        record = parse_leaf(leaf)
    except AuditLogCorrupt:
        return "unknown (not a record)"
    return str(record.log_index) if record.HasField("log_index") else "unknown (no log_index)"


@dataclass(frozen=True, slots=True)
class RecordProof:
    index: int
    leaf: bytes
    leaf_hash: bytes
    proof: InclusionProof
    root: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "size": self.proof.size,
            "leaf_hash": self.leaf_hash.hex(),
            "proof": [h.hex() for h in self.proof.hashes],
            "root": self.root.hex(),
        }


def prove_request(store: LogStore, request_id: str, checkpoint: Checkpoint) -> list[RecordProof]:
    """Inclusion proofs of every record of `request_id` in the tree of `checkpoint`,
    each verified against its root before it is returned."""
    rows = [(i, leaf) for i, leaf in store.find_by_request(request_id) if i < checkpoint.size]
    if not rows:
        raise NotFound(
            f"no record of request {request_id!r} in the first {checkpoint.size} records"
        )
    out = []
    for index, leaf in rows:
        digest = _sha256(b"\x00" + leaf).digest()
        proof = inclusion_proof(store, index, checkpoint.size)
        merkle.verify_inclusion(index, checkpoint.size, digest, proof.hashes, checkpoint.root)
        out.append(RecordProof(index, leaf, digest, proof, checkpoint.root))
    return out


def prove_consistency(store: LogStore, old: Checkpoint, new: Checkpoint) -> tuple[bytes, ...]:
    """A consistency proof from `old` to `new` built from the store and verified."""
    if old.origin != new.origin:
        raise InvalidRequest(f"checkpoints of two logs: {old.origin!r} and {new.origin!r}")
    proof = consistency_proof(store, old.size, new.size)
    merkle.verify_consistency(old.size, new.size, proof.hashes, old.root, new.root)
    return proof.hashes


@dataclass(frozen=True, slots=True)
class AccessRow:
    index: int
    time: dt.datetime
    client: str
    initiator: str
    service: str
    method: str
    purpose: str
    justification: str  # "consent <id>", "legal basis <id> (<law>)", …
    decision: str
    server: str
    hidden_until: dt.datetime | None
    record: audit_pb2.ExchangeRecord


def _justification(record: audit_pb2.ExchangeRecord) -> str:
    kind = audit_pb2.Justification.Name(record.justification).removeprefix("JUSTIFICATION_")
    if record.consent_id:
        return f"consent {record.consent_id}"
    if record.legal_basis_id:
        law = f" ({record.law_reference})" if record.law_reference else ""
        return f"legal basis {record.legal_basis_id}{law}"
    return kind.lower().replace("_", " ")


def _ms(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


def who_accessed(
    store: LogStore,
    pseudonymizer: Pseudonymizer,
    iin: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    limit: int = 10_000,
) -> list[AccessRow]:
    """Every record about the person with `iin` logged in [start, end), oldest first."""
    if end <= start:
        raise InvalidRequest("the time window is empty: --to must be after --from")
    pseudonym = pseudonymizer.pseudonym(iin)
    rows = store.find_by_subject(
        pseudonym, int(start.timestamp() * 1000), int(end.timestamp() * 1000), limit
    )
    out = []
    for index, leaf in rows:
        record = parse_leaf(leaf, index)
        out.append(
            AccessRow(
                index=index,
                time=_ms(record.logged_at_ms),
                client=record.client,
                initiator=record.initiator,
                service=record.service,
                method=record.method,
                purpose=record.purpose,
                justification=_justification(record),
                decision=audit_pb2.Decision.Name(record.decision).removeprefix("DECISION_"),
                server=record.server,
                hidden_until=_ms(record.hidden_until_ms) if record.hidden_until_ms else None,
                record=record,
            )
        )
    return out
