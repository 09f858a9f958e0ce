"""`govbus audit verify` on altered stores: it fails and says where. Also prove,
consistency, who-accessed and checkpoint through the real command."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest

from audit_log.keys import Pseudonymizer, generate_key_file
from audit_log.log import open_log
from audit_log.testing import sample_iin, sample_record
from govbus.crypto.keys import save_private_key
from govbus.crypto.pki import CertificateAuthority, IssuedKey, Role, certificate_pem
from tests.conftest import PASSPHRASE, run_cli

ORIGIN = "ss1.test.govbus.kz/audit"
PERSON = sample_iin(9003)  # no sample record's own subject


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/audit.db"
    dsn: str = request.getfixturevalue("pg_dsn")
    return f"{dsn}?schema=v_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def issued(ca: CertificateAuthority, tmp_path: Path) -> IssuedKey:
    key = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    (tmp_path / "signer.cert.pem").write_bytes(certificate_pem(key.certificate))
    save_private_key(tmp_path / "signer.key.pem", key.key, PASSPHRASE)
    (tmp_path / "ca.cert.pem").write_bytes(certificate_pem(ca.certificate))
    return key


def _fill(url: str, issued: IssuedKey, pseudonymizer: Pseudonymizer | None = None) -> None:
    """1,000 records with checkpoints at 300, 700 and 1,000."""

    async def main() -> None:
        log = await open_log(
            url, signer=issued.signer(), origin=ORIGIN, certificate=issued.certificate
        )
        for start, end in ((0, 300), (300, 700), (700, 1000)):
            await asyncio.gather(
                *(
                    log.append(
                        sample_record(
                            i, pseudonymizer=pseudonymizer, iin=PERSON if i % 50 == 0 else None
                        )
                    )
                    for i in range(start, end)
                )
            )
            await log.checkpoint()
        await log.close()

    asyncio.run(main())


def _tamper(url: str, *statements: str) -> None:
    if url.startswith("sqlite://"):
        db = sqlite3.connect(url[len("sqlite://") :])
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
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
            db.execute(statement.replace("X'00'", "'\\x00'::bytea"))


def _verify(url: str, tmp_path: Path, *extra: str, quiet: bool = True) -> tuple[int, str]:
    result = run_cli(
        "audit", "verify", "--store", url, "--cert", str(tmp_path / "signer.cert.pem"),
        "--ca", str(tmp_path / "ca.cert.pem"), *(["--quiet"] if quiet else []), *extra,
        check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


SWAP = (
    "UPDATE records SET idx = -1 WHERE idx = 400",
    "UPDATE records SET idx = 400 WHERE idx = 401",
    "UPDATE records SET idx = 401 WHERE idx = -1",
)


@pytest.mark.parametrize(
    ("statements", "where"),
    [
        (("UPDATE records SET record = record || X'00' WHERE idx = 500",), "record 500 was"),
        (
            (
                "UPDATE records SET record = record || X'00' WHERE idx = 500",
                "UPDATE records SET leaf_hash = X'00' WHERE idx = 500",
            ),
            "record 500 was altered",
        ),
        (("DELETE FROM records WHERE idx = 500",), "record 500 is missing"),
        (SWAP, "record at position 400 belongs at position 401"),
        (("DELETE FROM records WHERE idx >= 900",), "truncated"),
        (("DELETE FROM records WHERE idx >= 900",), "records 900..999 are missing"),
        (("DELETE FROM nodes WHERE level = 8 AND idx = 1",), "node over records 256..511"),
    ],
    ids=["changed", "changed-with-hash", "deleted", "reordered", "truncated", "truncated-where",
         "node"],
)  # fmt: skip
def test_verify_fails_and_says_where(
    store_url: str, issued: IssuedKey, tmp_path: Path, statements: tuple[str, ...], where: str
) -> None:
    _fill(store_url, issued)
    code, output = _verify(store_url, tmp_path)
    assert code == 0, output
    assert "verified" in output and "1,000 records" in output
    _tamper(store_url, *statements)
    code, output = _verify(store_url, tmp_path)
    assert code == 1
    assert "AUDIT_LOG_CORRUPT" in output and where in " ".join(output.split()), output
    assert "Traceback" not in output


def test_a_consistent_rewrite_is_caught_by_the_checkpoints(
    issued: IssuedKey, tmp_path: Path
) -> None:
    """An attacker who rewrites record 500, its leaf hash, the nodes and the head still cannot
    re-sign checkpoints: verify names the checkpoints around the change."""
    url = f"sqlite://{tmp_path}/audit.db"
    _fill(url, issued)
    # Build the rewritten history in a second log and copy its tree into the first.
    other = f"sqlite://{tmp_path}/forged.db"

    async def forge() -> None:
        log = await open_log(other, signer=issued.signer(), origin=ORIGIN)
        for i in range(1000):
            record = sample_record(i)
            if i == 500:
                record.purpose = "rewritten"
            await log.append(record)
        await log.close()

    asyncio.run(forge())
    db = sqlite3.connect(url[len("sqlite://") :])
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    db.execute(f"ATTACH DATABASE '{tmp_path}/forged.db' AS forged")
    for table in ("records", "nodes", "head"):
        db.execute(f"DELETE FROM main.{table}")
        db.execute(f"INSERT INTO main.{table} SELECT * FROM forged.{table}")
    db.commit()
    db.close()
    code, output = _verify(url, tmp_path)
    assert code == 1
    text = " ".join(output.split())
    assert "records 0..699 do not reproduce the stored checkpoint at size 700" in text, output
    assert "records 0..299 match the stored checkpoint at size 300" in text, output


def test_verify_against_a_checkpoint_the_auditor_holds(issued: IssuedKey, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/audit.db"
    _fill(url, issued)
    held = tmp_path / "held.txt"
    held.write_text(run_cli("audit", "checkpoint", "--store", url).stdout)
    assert held.read_text().startswith(f"{ORIGIN}\n1000\n")
    code, output = _verify(url, tmp_path, "--checkpoint", str(held), quiet=False)
    assert code == 0 and "Traceback" not in output, output
    forged = held.read_text().replace("\n1000\n", "\n999\n")
    (tmp_path / "forged.txt").write_text(forged)
    code, output = _verify(url, tmp_path, "--checkpoint", str(tmp_path / "forged.txt"))
    assert code == 1 and "SIGNATURE_INVALID" in output, output


def test_prove_consistency_and_who_accessed(issued: IssuedKey, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/audit.db"
    key_file = tmp_path / "pseudonym.key"
    generate_key_file(key_file)
    pseudonymizer = Pseudonymizer(key_file.read_bytes())
    _fill(url, issued, pseudonymizer)
    cert = ["--cert", str(tmp_path / "signer.cert.pem")]

    proof = run_cli("audit", "prove", "req-000000000042", "--store", url, *cert)
    data = json.loads(proof.stdout)
    assert [r["index"] for r in data["records"]] == [42] and data["records"][0]["size"] == 1000
    missing = run_cli("audit", "prove", "req-nope", "--store", url, *cert, check=False)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr

    old = tmp_path / "old.txt"

    async def first_checkpoint() -> str:
        from audit_log.store import open_store

        store = open_store(url, create=False)
        try:
            return store.checkpoints()[0].note
        finally:
            store.close()

    old.write_text(asyncio.run(first_checkpoint()))
    cons = run_cli("audit", "consistency", "--store", url, "--old", str(old), *cert)
    assert json.loads(cons.stdout)["size1"] == 300 and "consistent" in cons.stderr

    who = run_cli(
        "audit", "who-accessed", "--iin", PERSON, "--from", "2026-01-01", "--to", "2026-01-02",
        "--store", url, "--pseudonym-key", str(key_file), "--json",
    )  # fmt: skip
    rows = [json.loads(line) for line in who.stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(0, 1000, 50))
    assert rows[0]["client"] == "KZ/GOV/990240000016/con"
    assert rows[0]["justification"].startswith("consent ")
    bad = run_cli(
        "audit", "who-accessed", "--iin", "123456789012", "--from", "2026-01-01", "--to",
        "2026-01-02", "--store", url, "--pseudonym-key", str(key_file), check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and "INVALID_IDENTIFIER" in bad.stderr
    os.chmod(key_file, 0o644)
    loose = run_cli(
        "audit", "who-accessed", "--iin", PERSON, "--from", "2026-01-01", "--to", "2026-01-02",
        "--store", url, "--pseudonym-key", str(key_file), check=False,
    )  # fmt: skip
    assert loose.returncode == 1 and "KEY_INVALID" in loose.stderr

    signed = run_cli(
        "audit", "checkpoint", "--store", url, "--sign", "--key", str(tmp_path / "signer.key.pem"),
        *cert,
    )  # fmt: skip
    assert signed.stdout.startswith(f"{ORIGIN}\n1000\n")
