"""Evidence bundles made from records with real envelope signatures verify with plain
openssl (the bundle's own verify.sh), and stop verifying when anything is altered."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from audit_log.keys import RecordCipher, generate_key_file
from audit_log.log import open_log
from audit_log.testing import sample_iin, sample_record
from govbus.crypto.keys import Algorithm
from govbus.crypto.pki import (
    CertificateAuthority,
    IssuedKey,
    Role,
    certificate_der,
    certificate_pem,
)
from govbus.pb.govbus.v1 import audit_pb2, envelope_pb2
from tests.conftest import run_cli

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
ORIGIN = "ss1.test.govbus.kz/audit"


def _signed_exchange(member: IssuedKey, n: int) -> tuple[bytes, audit_pb2.ExchangeRecord]:
    """A real signed envelope header, as a consumer security server makes it."""
    body = f"request body {n}".encode()
    header = envelope_pb2.Header(
        kind=envelope_pb2.REQUEST,
        request_id=f"req-{n:012d}",
        client="KZ/GOV/990240000016/con",
        service="KZ/GOV/040340123459/gbdfl/person/v1",
        method="/kz.gov.gbdfl.v1.PersonRegistry/GetPerson",
        subject=sample_iin(n),
        purpose="birth certificate issuance",
        consent=f"consent-{n}",
        sent_at_ms=1_767_225_600_000 + n,
        body_sha256=hashlib.sha256(body).digest(),
        sender_server="KZ/GOV/990240000016/ss-con",
    ).SerializeToString(deterministic=True)
    signer = member.signer()
    record = sample_record(n)
    record.ClearField("header_ciphertext")
    record.signature.CopyFrom(signer.sign(header))
    record.signer_certificate_sha256 = hashlib.sha256(certificate_der(member.certificate)).digest()
    record.message_hash = record.request_hash = hashlib.sha256(header).digest()
    return header, record


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=["ecdsa", "ed25519"])
def test_bundle_verifies_with_openssl_and_tampering_fails(
    ca: CertificateAuthority, tmp_path: Path, algorithm: Algorithm
) -> None:
    log_signer = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459", algorithm=algorithm)
    member = ca.issue_key(Role.SIGNING, "KZ/GOV/990240000016", algorithm=algorithm)
    (tmp_path / "ca.cert.pem").write_bytes(certificate_pem(ca.certificate))
    (tmp_path / "log.cert.pem").write_bytes(certificate_pem(log_signer.certificate))
    data_key = tmp_path / "data.key"
    cipher = RecordCipher(generate_key_file(data_key))
    url = f"sqlite://{tmp_path}/audit.db"

    async def fill() -> None:
        log = await open_log(
            url,
            signer=log_signer.signer(),
            origin=ORIGIN,
            certificate=log_signer.certificate,
            cipher=cipher,
        )
        cert = certificate_der(member.certificate)
        for n in range(37):
            header, record = _signed_exchange(member, n)
            await log.append(record, header=header, signer_certificate=cert)
        await log.checkpoint()
        await log.close()

    asyncio.run(fill())
    bundle = tmp_path / "bundle"
    run_cli(
        "audit", "export", "req-000000000005", "req-000000000036", "--index", "17",
        "--store", url, "--out", str(bundle), "--data-key", str(data_key),
        "--ca", str(tmp_path / "ca.cert.pem"), "--cert", str(tmp_path / "log.cert.pem"),
    )  # fmt: skip
    records = sorted(p.name for p in (bundle / "records").iterdir())
    assert records == ["000000000005", "000000000017", "000000000036"]
    assert "openssl verify -CAfile ca.cert.pem" in (bundle / "README.md").read_text()
    header = envelope_pb2.Header.FromString(
        (bundle / "records/000000000005/header.bin").read_bytes()
    )
    assert header.subject == sample_iin(5)

    def check(folder: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(folder / "verify.sh")],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    ok = check(bundle)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: all signatures" in ok.stdout
    run_cli("audit", "verify-bundle", str(bundle))

    tampers = {
        "header": ("records/000000000017/header.bin", -5),
        "record": ("records/000000000017/record.bin", 40),
        "proof": ("records/000000000036/proof/00.bin", 3),
        "checkpoint": ("checkpoint.body", 2),
        "signature": ("records/000000000005/signature.der", 10),
    }
    for name, (path, offset) in tampers.items():
        copy = tmp_path / f"bad-{name}"
        shutil.copytree(bundle, copy)
        target = copy / path
        data = bytearray(target.read_bytes())
        data[offset] ^= 0x01
        target.write_bytes(bytes(data))
        bad = check(copy)
        assert bad.returncode != 0, f"tampered {name} still verified:\n{bad.stdout}"
        assert "FAILED" in bad.stderr or "failure" in bad.stderr.lower(), bad.stderr
        refused = run_cli("audit", "verify-bundle", str(copy), check=False)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
