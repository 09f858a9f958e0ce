"""Keys, signatures and the CA — checked against openssl where it matters."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from govbus.crypto.keys import (
    Algorithm,
    KeySigner,
    PublicKeyVerifier,
    generate_key,
    load_private_key,
    save_private_key,
)
from govbus.crypto.pki import (
    CertificateAuthority,
    Role,
    TrustAnchor,
    certificate_der,
    certificate_pem,
    load_certificate,
)
from govbus.errors import (
    CertificateExpired,
    CertificateInvalid,
    CertificateRevoked,
    ConfigInvalid,
    KeyInvalid,
    PassphraseInvalid,
    SignatureInvalid,
)
from tests.conftest import PASSPHRASE, run_cli

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_sign_and_verify(algorithm: Algorithm) -> None:
    key = generate_key(algorithm)
    signer = KeySigner(key, b"kid")
    signature = signer.sign(b"header bytes")
    assert signature.algorithm == algorithm.value
    verifier = PublicKeyVerifier(key.public_key(), b"kid")
    verifier.verify(signature, b"header bytes")
    with pytest.raises(SignatureInvalid):
        verifier.verify(signature, b"header bytez")
    signature.value = bytes([signature.value[0] ^ 1]) + signature.value[1:]
    with pytest.raises(SignatureInvalid):
        verifier.verify(signature, b"header bytes")


def test_signature_naming_another_algorithm_is_refused() -> None:
    key = generate_key(Algorithm.ECDSA_P256_SHA256)
    signature = KeySigner(key, b"").sign(b"x")
    signature.algorithm = Algorithm.ED25519.value
    with pytest.raises(SignatureInvalid, match="algorithm"):
        PublicKeyVerifier(key.public_key()).verify(signature, b"x")


def test_key_file_encrypted_at_rest(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "k.pem"
    save_private_key(path, key, PASSPHRASE)
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert path.stat().st_mode & 0o077 == 0
    loaded = load_private_key(path, PASSPHRASE)
    assert loaded.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_wrong_passphrase_and_corrupted_key_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    save_private_key(path, generate_key(), PASSPHRASE)
    with pytest.raises(PassphraseInvalid, match="wrong passphrase"):
        load_private_key(path, b"not-the-passphrase")
    lines = path.read_bytes().splitlines()
    lines[1] = b"!!!!" + lines[1][4:]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises((KeyInvalid, PassphraseInvalid)):
        load_private_key(path, PASSPHRASE)
    path.write_bytes(b"this is not a key")
    with pytest.raises(KeyInvalid, match="not a PEM private key"):
        load_private_key(path, PASSPHRASE)
    with pytest.raises(KeyInvalid, match="cannot read"):
        load_private_key(tmp_path / "missing.pem", PASSPHRASE)


def test_issue_validate_revoke(ca: CertificateAuthority) -> None:
    issued = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    anchor = ca.trust_anchor()
    identity = anchor.validate(issued.certificate, role=Role.SIGNING)
    assert identity.name == "KZ/GOV/040340123459"
    with pytest.raises(CertificateInvalid, match="role"):
        anchor.validate(issued.certificate, role=Role.SERVER)
    ca.revoke(issued.certificate.serial_number, "key compromise")
    with pytest.raises(CertificateRevoked):
        ca.trust_anchor().validate(issued.certificate)


def test_expired_and_foreign_certificates(ca: CertificateAuthority, tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    old = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459", days=1, now=past)
    with pytest.raises(CertificateExpired, match="expired"):
        ca.trust_anchor().validate(old.certificate)
    other = CertificateAuthority.init(tmp_path / "other", PASSPHRASE)
    foreign = other.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    with pytest.raises(CertificateInvalid, match=r"not verify|not issued"):
        ca.trust_anchor().validate(foreign.certificate)
    with pytest.raises(CertificateInvalid):
        ca.trust_anchor().validate(b"\x30\x03garbage")


def test_same_name_other_ca_is_caught(ca: CertificateAuthority, tmp_path: Path) -> None:
    impostor = CertificateAuthority.init(tmp_path / "impostor", PASSPHRASE)  # same default name
    forged = impostor.issue_key(Role.SERVER, "KZ/GOV/040340123459/ss1", hosts=["localhost"])
    with pytest.raises(CertificateInvalid, match="forged"):
        TrustAnchor([ca.certificate]).validate(forged.certificate)


def test_reopen_ca_with_wrong_passphrase(ca: CertificateAuthority) -> None:
    with pytest.raises(PassphraseInvalid):
        CertificateAuthority.open(ca.directory, b"wrong-passphrase")
    with pytest.raises(ConfigInvalid, match="already exists"):
        CertificateAuthority.init(ca.directory, PASSPHRASE)


@needs_openssl
@pytest.mark.parametrize("role", [Role.SIGNING, Role.SERVER, Role.REGISTRY, Role.CITIZEN])
def test_openssl_verifies_issued_certificates(
    ca: CertificateAuthority, tmp_path: Path, role: Role
) -> None:
    issued = ca.issue_key(role, "KZ/GOV/040340123459/ss1", hosts=["localhost", "127.0.0.1"])
    cert = tmp_path / "c.pem"
    cert.write_bytes(certificate_pem(issued.certificate))
    out = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(ca.directory / "ca.cert.pem"), str(cert)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert ": OK" in out.stdout
    if role is Role.SERVER:
        text = subprocess.run(
            [
                OPENSSL,
                "x509",
                "-in",
                str(cert),
                "-noout",
                "-ext",
                "subjectAltName,extendedKeyUsage",
            ],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
        assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text


@needs_openssl
def test_openssl_rejects_foreign_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    other = CertificateAuthority.init(tmp_path / "other", PASSPHRASE)
    cert = tmp_path / "c.pem"
    cert.write_bytes(certificate_pem(other.issue_key(Role.SIGNING, "x").certificate))
    out = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(ca.directory / "ca.cert.pem"), str(cert)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0


@needs_openssl
def test_cli_signature_verifies_with_openssl(ca: CertificateAuthority, tmp_path: Path) -> None:
    run_cli(
        "pki",
        "issue",
        "signing",
        "KZ/GOV/040340123459",
        "--out",
        str(tmp_path / "member"),
        "--dir",
        str(ca.directory),
    )
    document = tmp_path / "doc.bin"
    document.write_bytes(b"exchange record\n" * 10)
    run_cli(
        "pki",
        "sign",
        str(document),
        "--key",
        str(tmp_path / "member.key.pem"),
        "--out",
        str(tmp_path / "doc.sig"),
    )
    pubkey = tmp_path / "member.pub.pem"
    subprocess.run(
        [
            OPENSSL,
            "x509",
            "-in",
            str(tmp_path / "member.cert.pem"),
            "-pubkey",
            "-noout",
            "-out",
            str(pubkey),
        ],  # type: ignore[list-item]
        check=True,
    )
    ok = subprocess.run(
        [
            OPENSSL,
            "dgst",
            "-sha256",
            "-verify",
            str(pubkey),
            "-signature",
            str(tmp_path / "doc.sig"),
            str(document),
        ],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and "Verified OK" in ok.stdout
    document.write_bytes(b"exchange record\n" * 9)
    bad = subprocess.run(
        [
            OPENSSL,
            "dgst",
            "-sha256",
            "-verify",
            str(pubkey),
            "-signature",
            str(tmp_path / "doc.sig"),
            str(document),
        ],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    # openssl can also read the encrypted key with the same passphrase.
    subprocess.run(
        [
            OPENSSL,
            "pkey",
            "-in",
            str(tmp_path / "member.key.pem"),
            "-passin",
            f"pass:{PASSPHRASE.decode()}",
            "-noout",
        ],  # type: ignore[list-item]
        check=True,
    )


def test_cli_errors_are_clear_not_tracebacks(tmp_path: Path) -> None:
    run_cli("pki", "init", "--dir", str(tmp_path / "pki"))
    wrong = run_cli(
        "pki",
        "list",
        "--dir",
        str(tmp_path / "pki"),
        env={"GOVBUS_KEY_PASSPHRASE": "wrong-passphrase"},
        check=False,
    )
    assert wrong.returncode == 1
    assert "PASSPHRASE_INVALID" in wrong.stderr and "Traceback" not in wrong.stderr
    (tmp_path / "pki" / "ca.key.pem").write_text("garbage")
    corrupt = run_cli("pki", "list", "--dir", str(tmp_path / "pki"), check=False)
    assert corrupt.returncode == 1
    assert "KEY_INVALID" in corrupt.stderr and "Traceback" not in corrupt.stderr


def test_cli_show_revoked_and_expired(tmp_path: Path) -> None:
    pki = str(tmp_path / "pki")
    run_cli("pki", "init", "--dir", pki)
    run_cli(
        "pki",
        "issue",
        "server",
        "KZ/GOV/040340123459/ss1",
        "--out",
        str(tmp_path / "ss1"),
        "--dir",
        pki,
    )
    shown = run_cli("pki", "show", str(tmp_path / "ss1.cert.pem"), "--dir", pki)
    assert "valid" in shown.stdout and "server KZ/GOV/040340123459/ss1" in shown.stdout
    serial = next(
        line.split()[-1] for line in shown.stdout.splitlines() if line.strip().startswith("serial")
    )
    run_cli("pki", "revoke", serial, "--dir", pki)
    revoked = run_cli("pki", "show", str(tmp_path / "ss1.cert.pem"), "--dir", pki, check=False)
    assert revoked.returncode == 1 and "CERTIFICATE_REVOKED" in revoked.stdout
    run_cli(
        "pki",
        "issue",
        "signing",
        "KZ/GOV/040340123459",
        "--out",
        str(tmp_path / "m"),
        "--dir",
        pki,
        "--days",
        "0",
    )
    expired = run_cli("pki", "show", str(tmp_path / "m.cert.pem"), "--dir", pki, check=False)
    assert expired.returncode == 1 and "CERTIFICATE_EXPIRED" in expired.stdout


def test_certificate_with_unknown_version_is_a_clear_error(ca: CertificateAuthority) -> None:
    """Regression: a flipped version byte raised cryptography's InvalidVersion, not ours."""
    der = certificate_der(ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459").certificate)
    version_v3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2 (= X.509 v3)
    assert version_v3 in der
    damaged = der.replace(version_v3, bytes.fromhex("a003020103"), 1)
    with pytest.raises(CertificateInvalid, match="not a valid X"):
        load_certificate(damaged)
