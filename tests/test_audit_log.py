"""The audit log against both stores: group commit, restart, proofs, reads, bad input,
and a store altered behind the log's back."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest

from audit_log import merkle
from audit_log.hashing import leaf_hash
from audit_log.keys import Pseudonymizer, RecordCipher
from audit_log.log import AuditLog, open_log
from audit_log.note import verify_checkpoint
from audit_log.testing import sample_iin, sample_record
from govbus.crypto.keys import KeySigner
from govbus.crypto.pki import CertificateAuthority, Role
from govbus.errors import (
    AuditLogCorrupt,
    AuditLogUnavailable,
    ConfigInvalid,
    InvalidRequest,
    KeyInvalid,
)

ORIGIN = "ss1.test.govbus.kz/audit"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/audit.db"
    dsn: str = request.getfixturevalue("pg_dsn")
    return f"{dsn}?schema=audit_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def signer(ca: CertificateAuthority) -> KeySigner:
    return ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459").signer()


@pytest.fixture
def cipher() -> RecordCipher:
    return RecordCipher(os.urandom(32))


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(os.urandom(32))


async def _open(url: str, signer: KeySigner, **kwargs: object) -> AuditLog:
    return await open_log(url, signer=signer, origin=ORIGIN, **kwargs)  # type: ignore[arg-type]


def tamper(url: str, *statements: str) -> None:
    """Change the store behind the log's back, as an attacker with database access would."""
    if url.startswith("sqlite://"):
        db = sqlite3.connect(url[len("sqlite://") :])
        for name in [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]:
            db.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.close()
        return
    base, schema = url.split("?schema=")
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f"SET search_path TO {schema}")
        for table in ("records", "nodes", "head", "checkpoints"):
            db.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in statements:
            db.execute(statement.replace("?", "%s"))


def test_concurrent_appends_share_commits_and_prove(store_url: str, signer: KeySigner) -> None:
    async def main() -> None:
        log = await _open(store_url, signer)
        first = await asyncio.gather(*(log.append(sample_record(i)) for i in range(300)))
        assert sorted(first) == list(range(300))
        assert log.commits < 300 / 4, "concurrent appends should share commits"
        cp1 = await log.checkpoint()
        second = await asyncio.gather(*(log.append(sample_record(i)) for i in range(300, 777)))
        assert sorted(second) == list(range(300, 777))
        cp2 = await log.checkpoint()
        assert (cp1.size, cp2.size) == (300, 777)
        for cp in (cp1, cp2):
            checkpoint, _, _ = verify_checkpoint(cp.note, log.log_key)
            assert (checkpoint.size, checkpoint.root) == (cp.size, cp.root)
        records = await log.get([0, 299, 300, 776])
        for logged in records:
            for cp in (cp1, cp2):
                if logged.index < cp.size:
                    proof = await log.inclusion_proof(logged.index, cp.size)
                    merkle.verify_inclusion(
                        logged.index, cp.size, leaf_hash(logged.leaf), proof.hashes, cp.root
                    )
        proof = await log.consistency_proof(cp1.size, cp2.size)
        merkle.verify_consistency(cp1.size, cp2.size, proof.hashes, cp1.root, cp2.root)
        assert (await log.checkpoint()).note == cp2.note, "same tree, same checkpoint"
        await log.close()

    asyncio.run(main())


def test_state_survives_restart(store_url: str, signer: KeySigner) -> None:
    async def main() -> None:
        log = await _open(store_url, signer)
        await asyncio.gather(*(log.append(sample_record(i)) for i in range(600)))
        cp = await log.checkpoint()
        await log.close()
        log = await _open(store_url, signer)
        assert (log.size, log.root) == (cp.size, cp.root)
        assert await log.append(sample_record(600)) == 600
        later = await log.checkpoint()
        proof = await log.consistency_proof(cp.size)
        merkle.verify_consistency(cp.size, later.size, proof.hashes, cp.root, later.root)
        await log.close()
        log = await _open(store_url, signer, check="full")
        assert log.size == 601
        await log.close()

    asyncio.run(main())


def test_leaf_is_deterministic_serialization_with_index(store_url: str, signer: KeySigner) -> None:
    async def main() -> None:
        log = await _open(store_url, signer)
        record = sample_record(1)
        index = await log.append(record)
        (logged,) = await log.get([index])
        assert logged.record.log_index == index == 0
        assert logged.record.SerializeToString(deterministic=True) == logged.leaf
        assert not record.HasField("log_index"), "the caller's record is not given an index"
        await log.close()

    asyncio.run(main())


def test_reads_by_subject_and_request(
    store_url: str, signer: KeySigner, pseudonymizer: Pseudonymizer
) -> None:
    person = sample_iin(7)

    async def main() -> None:
        log = await _open(store_url, signer)
        for i in range(40):
            who = person if i % 4 == 0 else sample_iin(100 + i)
            await log.append(
                sample_record(i, pseudonymizer=pseudonymizer, iin=who, logged_at_ms=1000 * i)
            )
        await log.append(sample_record(40, request_id="req-000000000004"))
        mine = await log.find_by_subject(pseudonymizer.pseudonym(person), 4000, 30000)
        assert [r.index for r in mine] == [4, 8, 12, 16, 20, 24, 28]
        assert all(r.record.subject_pseudonym == pseudonymizer.pseudonym(person) for r in mine)
        assert (
            len(await log.find_by_subject(pseudonymizer.pseudonym(person), 0, 10**12, limit=3)) == 3
        )
        both = await log.find_by_request("req-000000000004")
        assert [r.index for r in both] == [4, 40]
        with pytest.raises(InvalidRequest):
            await log.find_by_subject(person.encode(), 0, 1)
        await log.close()

    asyncio.run(main())


def test_header_and_body_sealing(store_url: str, signer: KeySigner, cipher: RecordCipher) -> None:
    async def main() -> None:
        log = await _open(store_url, signer, cipher=cipher)
        record = sample_record(0)
        record.ClearField("header_ciphertext")
        await log.append(record, header=b"signed header bytes", body=b"payload")
        (logged,) = await log.get([0])
        assert cipher.open(logged.record.header_ciphertext, logged.record.message_hash) == (
            b"signed header bytes"
        )
        assert logged.record.body_ciphertext == b"", "bodies are not stored by default"
        await log.close()
        log = await _open(store_url, signer, cipher=cipher, store_bodies=True)
        await log.append(sample_record(1), body=b"payload")
        (logged,) = await log.get([1])
        assert cipher.open(logged.record.body_ciphertext, logged.record.body_sha256) == b"payload"
        await log.close()
        with pytest.raises(KeyInvalid, match="data key"):
            await _open(store_url, signer, cipher=RecordCipher(os.urandom(32)))
        with pytest.raises(ConfigInvalid, match="belongs to log"):
            await open_log(store_url, signer=signer, origin="another.log/x")

    asyncio.run(main())


def test_bad_input_changes_nothing(store_url: str, signer: KeySigner) -> None:
    async def main() -> None:
        log = await _open(store_url, signer)
        bad = [sample_record(0), sample_record(1), sample_record(2)]
        bad[0].request_id = ""
        bad[1].log_index = 5
        bad[2].subject_pseudonym = b"850606400057"
        for record in bad:
            with pytest.raises(InvalidRequest):
                await log.append(record)
        with pytest.raises(ConfigInvalid, match="data key"):
            await log.append(sample_record(3), header=b"h")
        assert log.size == 0
        await log.close()
        with pytest.raises(AuditLogUnavailable, match="closed"):
            await log.append(sample_record(4))

    asyncio.run(main())


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (["DELETE FROM records WHERE idx = 599"], "tree head says 600"),
        (["DELETE FROM records WHERE idx = 10"], "tree head says 600"),
        (["UPDATE records SET record = record || X'00' WHERE idx = 590"], "record 590"),
        (["UPDATE head SET root = X'" + "00" * 32 + "'"], "root"),
        (
            ["DELETE FROM nodes WHERE level = 8 AND idx = 1"],
            "missing tree nodes under records 0..511",
        ),
    ],
    ids=["truncated", "deleted", "altered-tail", "head", "node"],
)
def test_open_refuses_an_altered_store(
    store_url: str, signer: KeySigner, statements: list[str], message: str
) -> None:
    if store_url.startswith("postgres"):
        statements = [
            s.replace("X'", "'\\x").replace("|| '\\x00'", "|| '\\x00'::bytea") for s in statements
        ]

    async def main() -> None:
        log = await _open(store_url, signer)
        await asyncio.gather(*(log.append(sample_record(i)) for i in range(600)))
        await log.checkpoint()
        await log.close()
        tamper(store_url, *statements)
        with pytest.raises(AuditLogCorrupt, match=message):
            await _open(store_url, signer)

    asyncio.run(main())


def test_full_check_finds_an_old_altered_record(store_url: str, signer: KeySigner) -> None:
    async def main() -> None:
        log = await _open(store_url, signer)
        await asyncio.gather(*(log.append(sample_record(i)) for i in range(600)))
        await log.close()
        concat = "record || X'00'" if store_url.startswith("sqlite") else "record || '\\x00'::bytea"
        tamper(store_url, f"UPDATE records SET record = {concat} WHERE idx = 3")
        # The quick check covers the tree's right edge and the newest records only.
        log = await _open(store_url, signer)
        await log.close()
        with pytest.raises(AuditLogCorrupt, match="record 3 was altered"):
            await _open(store_url, signer, check="full")

    asyncio.run(main())


def test_signing_key_rotation_keeps_old_checkpoints_checkable(
    store_url: str, ca: CertificateAuthority
) -> None:
    first = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459").signer()
    second = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459").signer()
    third = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459").signer()

    async def main() -> None:
        for n, signer in enumerate((first, second)):
            log = await _open(store_url, signer)
            await asyncio.gather(
                *(log.append(sample_record(i)) for i in range(n * 10, n * 10 + 10))
            )
            await log.checkpoint()
            await log.close()
        log = await _open(store_url, third, check="full")
        assert log.size == 20
        await log.close()

    asyncio.run(main())
