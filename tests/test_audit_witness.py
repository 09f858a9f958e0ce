"""The registry's witness: refusals of c2sp.org/tlog-witness, cosignatures, both stores,
and the log submitting checkpoints to it over a real gRPC server."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from audit_log import merkle
from audit_log.hashing import leaf_hash
from audit_log.log import AuditLog, open_log
from audit_log.note import (
    Checkpoint,
    NoteSigner,
    SignedNote,
    parse_note,
    verify_checkpoint,
)
from audit_log.testing import sample_record
from audit_log.tree import MemorySource, consistency_proof
from audit_log.witness import (
    SqliteWitnessStore,
    Witness,
    WitnessStore,
    add_witness_servicer,
    get_witnessed,
    open_witness_store,
    submit_checkpoint,
)
from govbus.crypto.keys import Algorithm
from govbus.crypto.pki import CertificateAuthority, IssuedKey, Role
from govbus.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    ProofInvalid,
    SignatureInvalid,
)

ORIGIN = "ss1.test.govbus.kz/audit"
WITNESS = "registry.test.govbus.kz/witness"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def witness_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WitnessStore]:
    if request.param == "sqlite":
        store = open_witness_store(f"sqlite://{tmp_path}/witness.db")
    else:
        dsn: str = request.getfixturevalue("pg_dsn")
        store = open_witness_store(f"{dsn}?schema=w_{uuid.uuid4().hex[:10]}")
    yield store
    store.close()


@pytest.fixture(params=[Algorithm.ECDSA_P256_SHA256, Algorithm.ED25519], ids=["ecdsa", "ed25519"])
def keys(request: pytest.FixtureRequest, ca: CertificateAuthority) -> tuple[IssuedKey, IssuedKey]:
    log_key = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459", algorithm=request.param)
    registry = ca.issue_key(Role.REGISTRY, "registry", algorithm=request.param)
    return log_key, registry


class Tree:
    """A log kept in memory, to feed the witness exact checkpoints and proofs."""

    def __init__(self, signer: NoteSigner) -> None:
        self.signer = signer
        self.leaves: list[bytes] = []

    def grow(self, n: int) -> None:
        self.leaves += [leaf_hash(f"leaf {len(self.leaves) + i}".encode()) for i in range(n)]

    def note(self, size: int | None = None, root: bytes | None = None) -> str:
        size = len(self.leaves) if size is None else size
        root = merkle.root(self.leaves[:size]) if root is None else root
        text = Checkpoint(self.signer.name, size, root).text()
        return SignedNote(text, (self.signer.sign(text),)).render()

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self.leaves) if new is None else new
        return list(consistency_proof(MemorySource(self.leaves), old, new).hashes)


def _witness(keys: tuple[IssuedKey, IssuedKey], store: WitnessStore, now: list[float]) -> Witness:
    log_key, registry = keys
    return Witness(
        WITNESS,
        registry.signer(),
        registry.key.public_key(),
        {ORIGIN: log_key.key.public_key()},
        store,
        clock=lambda: now[0],
    )


def test_witness_cosigns_only_consistent_growth(
    keys: tuple[IssuedKey, IssuedKey], witness_store: WitnessStore
) -> None:
    log_key, registry = keys
    now = [1_767_225_600.0]
    witness = _witness(keys, witness_store, now)
    tree = Tree(NoteSigner(ORIGIN, log_key.signer(), log_key.key.public_key()))
    tree.grow(5)
    line = witness.add_checkpoint(0, [], tree.note())
    cosigned = tree.note() + line
    _, _, names = verify_checkpoint(cosigned, tree.signer.key, [witness.key])
    assert names == [WITNESS]
    signature = parse_note(cosigned).signatures[-1]
    assert witness.key.verify(parse_note(cosigned).text, signature) == int(now[0])

    tree.grow(7)
    assert witness.add_checkpoint(5, tree.proof(5), tree.note())
    assert witness_store.latest(ORIGIN).size == 12  # type: ignore[union-attr]
    # Resubmitting the same checkpoint is fine (idempotent cosign).
    assert witness.add_checkpoint(12, [], tree.note())

    # Stale old size: refused with the witness's own size.
    tree.grow(3)
    with pytest.raises(FailedPrecondition) as stale:
        witness.add_checkpoint(5, tree.proof(5), tree.note())
    assert stale.value.metadata["witness_size"] == "12"
    # Old size larger than the new one.
    with pytest.raises(InvalidRequest):
        witness.add_checkpoint(16, [], tree.note())
    # A proof that does not verify.
    bad = tree.proof(12)
    bad[0] = bytes(32)
    with pytest.raises(ProofInvalid):
        witness.add_checkpoint(12, bad, tree.note())
    # A fork: same size, another root.
    with pytest.raises(ProofInvalid, match="fork"):
        witness.add_checkpoint(12, [], tree.note(12, bytes(32)))
    # A rewritten history: consistent-looking proof from a different tree.
    other = Tree(tree.signer)
    other.leaves = [bytes(32)] * 15
    with pytest.raises(ProofInvalid):
        witness.add_checkpoint(12, other.proof(12), other.note())
    assert witness_store.latest(ORIGIN).size == 12  # type: ignore[union-attr]
    witness.add_checkpoint(12, tree.proof(12), tree.note())
    assert witness_store.latest(ORIGIN).size == 15  # type: ignore[union-attr]
    del registry


def test_witness_refuses_unknown_logs_and_bad_signatures(
    keys: tuple[IssuedKey, IssuedKey], witness_store: WitnessStore, ca: CertificateAuthority
) -> None:
    log_key, _ = keys
    witness = _witness(keys, witness_store, [0.0])
    stranger = ca.issue_key(Role.SIGNING, "KZ/GOV/990240000016")
    tree = Tree(NoteSigner(ORIGIN, log_key.signer(), log_key.key.public_key()))
    tree.grow(3)
    forged = Tree(NoteSigner(ORIGIN, stranger.signer(), stranger.key.public_key()))
    forged.grow(3)
    with pytest.raises(SignatureInvalid):
        witness.add_checkpoint(0, [], forged.note())
    unknown = Tree(NoteSigner("other.log/x", log_key.signer(), log_key.key.public_key()))
    unknown.grow(3)
    with pytest.raises(NotFound):
        witness.add_checkpoint(0, [], unknown.note())
    with pytest.raises(InvalidRequest):
        witness.add_checkpoint(0, [], "not a note")
    with pytest.raises(InvalidRequest):
        witness.add_checkpoint(0, [bytes(32)] * 64, tree.note())
    assert witness_store.latest(ORIGIN) is None


def test_racing_submissions_never_roll_back(tmp_path: Path, ca: CertificateAuthority) -> None:
    """Two checks pass against the same stored size; only the first may be stored."""
    log_key = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    registry = ca.issue_key(Role.REGISTRY, "registry")
    store = SqliteWitnessStore(tmp_path / "w.db")
    witness = _witness((log_key, registry), store, [0.0])
    tree = Tree(NoteSigner(ORIGIN, log_key.signer(), log_key.key.public_key()))
    tree.grow(4)
    witness.add_checkpoint(0, [], tree.note())
    from audit_log.witness import WitnessState

    assert store.advance(4, WitnessState(ORIGIN, 9, bytes(32), "n"), 1) is None
    assert store.advance(4, WitnessState(ORIGIN, 6, bytes(32), "n"), 1) == 9
    assert store.latest(ORIGIN).size == 9  # type: ignore[union-attr]


@pytest.mark.postgres
def test_postgres_first_submissions_for_an_origin_are_serialised(pg_dsn: str) -> None:
    """An origin's first row has no row to lock: a submission racing another one's first
    row must wait for it and then see it (a stale answer), never overwrite it."""
    import psycopg
    from psycopg import sql

    from audit_log.witness import WitnessState

    schema, name = f"w_{uuid.uuid4().hex[:10]}", f"witness_race_{uuid.uuid4().hex[:8]}"
    store = open_witness_store(f"{pg_dsn}?schema={schema}&application_name={name}")
    answers: list[int | None] = []
    racer = threading.Thread(
        target=lambda: answers.append(
            store.advance(0, WitnessState(ORIGIN, 4, bytes(32), "mine"), 2)
        )
    )

    def racer_waits_on_a_lock(watcher: psycopg.Connection[tuple[int]]) -> bool:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'",
            (name,),
        ).fetchone()
        return row is not None and row[0] > 0

    try:
        with (
            psycopg.connect(pg_dsn, autocommit=True) as first,
            psycopg.connect(pg_dsn, autocommit=True) as watcher,
        ):
            first.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            with first.transaction():
                # What another registry process does for the same origin: lock, insert.
                first.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (ORIGIN,))
                first.execute(
                    "INSERT INTO witness_latest (origin, size, root, note, updated_at_ms) "
                    "VALUES (%s, 9, %s, 'theirs', 1)",
                    (ORIGIN, bytes(32)),
                )
                racer.start()
                deadline = time.monotonic() + 30
                while not racer_waits_on_a_lock(watcher):
                    assert time.monotonic() < deadline, "the racing submission never waited"
                    time.sleep(0.01)
        racer.join(timeout=30)
        assert answers == [9]
        stored = store.latest(ORIGIN)
        assert stored is not None
        assert (stored.size, stored.note) == (9, "theirs")
    finally:
        if racer.ident is not None:
            racer.join(timeout=30)
        store.close()


def test_log_submits_to_the_witness_over_grpc(tmp_path: Path, ca: CertificateAuthority) -> None:
    log_issued = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    registry = ca.issue_key(Role.REGISTRY, "registry")
    witness = Witness(
        WITNESS,
        registry.signer(),
        registry.key.public_key(),
        {ORIGIN: log_issued.key.public_key()},
        SqliteWitnessStore(tmp_path / "witness.db"),
    )
    url = f"sqlite://{tmp_path}/log.db"

    async def main() -> None:
        server = grpc.aio.server()
        servicer = add_witness_servicer(server, witness)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            log = await open_log(url, signer=log_issued.signer(), origin=ORIGIN)
            await asyncio.gather(*(log.append(sample_record(i)) for i in range(50)))
            first = await log.submit_to_witness(channel, witness_key=witness.key)
            _, _, names = verify_checkpoint(first.note, log.log_key, [witness.key])
            assert names == [WITNESS]
            await asyncio.gather(*(log.append(sample_record(i)) for i in range(50, 80)))
            second = await log.submit_to_witness(channel, witness_key=witness.key)
            assert second.size == 80
            assert (await log.latest_checkpoint()).note == second.note  # type: ignore[union-attr]
            assert (await get_witnessed(channel, ORIGIN)).startswith(second.note.split("\n\n")[0])
            # The periodic task: the log grows, a cosigned checkpoint follows.
            task = log.start_checkpointing(0.05, channel, witness_key=witness.key)
            await log.append(sample_record(80))
            for _ in range(500):  # the witness's state has no change notification: poll it
                if witness.latest(ORIGIN).size == 81:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.02)
            assert witness.latest(ORIGIN).size == 81  # type: ignore[union-attr]
            await log.close()
            assert task.done()
            # A restarted log learns the witness's size from its own cosigned checkpoints.
            log = await open_log(url, signer=log_issued.signer(), origin=ORIGIN)
            await log.append(sample_record(81))
            third = await log.submit_to_witness(channel, witness_key=witness.key)
            assert third.size == 82
            # Errors arrive typed through gRPC.
            with pytest.raises(NotFound):
                await get_witnessed(channel, "no.such/log")
            proof = await log.consistency_proof(3)
            with pytest.raises(FailedPrecondition) as stale:
                await submit_checkpoint(channel, third, proof)
            assert stale.value.metadata["witness_size"] == "82"
            await log.close()
        finally:
            await channel.close()
            await server.stop(None)
            servicer.close()

    asyncio.run(main())


def test_log_that_lost_records_is_caught_by_the_witness(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    """A security server restored from an old backup cannot get a new cosignature."""
    import shutil

    log_issued = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    registry = ca.issue_key(Role.REGISTRY, "registry")
    witness = Witness(
        WITNESS,
        registry.signer(),
        registry.key.public_key(),
        {ORIGIN: log_issued.key.public_key()},
        SqliteWitnessStore(tmp_path / "witness.db"),
    )

    async def main() -> None:
        server = grpc.aio.server()
        servicer = add_witness_servicer(server, witness)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            log: AuditLog = await open_log(
                f"sqlite://{tmp_path}/log.db", signer=log_issued.signer(), origin=ORIGIN
            )
            await asyncio.gather(*(log.append(sample_record(i)) for i in range(20)))
            await log.close()
            shutil.copy(tmp_path / "log.db", tmp_path / "backup.db")
            log = await open_log(
                f"sqlite://{tmp_path}/log.db", signer=log_issued.signer(), origin=ORIGIN
            )
            await asyncio.gather(*(log.append(sample_record(i)) for i in range(20, 40)))
            await log.submit_to_witness(channel)
            await log.close()
            # The backup has 20 records and a different future.
            log = await open_log(
                f"sqlite://{tmp_path}/backup.db", signer=log_issued.signer(), origin=ORIGIN
            )
            await asyncio.gather(*(log.append(sample_record(i + 1000)) for i in range(30)))
            with pytest.raises(ProofInvalid):
                await log.submit_to_witness(channel)
            await log.close()
            assert witness.latest(ORIGIN).size == 40  # type: ignore[union-attr]
        finally:
            await channel.close()
            await server.stop(None)
            servicer.close()

    asyncio.run(main())


def test_audit_query_service(tmp_path: Path, ca: CertificateAuthority) -> None:
    import os

    from audit_log.keys import Pseudonymizer
    from audit_log.query import add_audit_query_servicer
    from audit_log.testing import sample_iin
    from govbus.errors import AccessDenied, from_rpc_error
    from govbus.pb.govbus.v1 import auditlog_pb2, auditlog_pb2_grpc

    issued = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    pseudonymizer = Pseudonymizer(os.urandom(32))
    person = sample_iin(9001)

    async def allow(context: object) -> None:
        del context

    async def main() -> None:
        log = await open_log(f"sqlite://{tmp_path}/log.db", signer=issued.signer(), origin=ORIGIN)
        for i in range(5):
            await log.append(sample_record(i, pseudonymizer=pseudonymizer, iin=person))
        for authorize, port_name in ((allow, "open"), (None, "closed")):
            server = grpc.aio.server()
            add_audit_query_servicer(server, log, authorize)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = auditlog_pb2_grpc.AuditQueryServiceStub(channel)
                request = auditlog_pb2.FindBySubjectRequest(
                    subject_pseudonym=pseudonymizer.pseudonym(person),
                    from_ms=0,
                    to_ms=2**62,
                    limit=3,
                )
                if port_name == "open":
                    answer = await stub.FindBySubject(request)
                    assert [r.index for r in answer.records] == [0, 1, 2] and answer.truncated
                else:
                    with pytest.raises(grpc.RpcError) as refused:
                        await stub.FindBySubject(request)
                    assert isinstance(from_rpc_error(refused.value), AccessDenied)
            await server.stop(None)
        await log.close()

    asyncio.run(main())
