"""Key files, pseudonyms, record sealing, and the C2SP note format (with openssl)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log.keys import Pseudonymizer, RecordCipher, generate_key_file, load_key_file
from audit_log.note import (
    Checkpoint,
    NoteKey,
    NoteSigner,
    SignedNote,
    parse_checkpoint_note,
    parse_note,
    verify_checkpoint,
)
from govbus.crypto.keys import Algorithm
from govbus.crypto.pki import CertificateAuthority, Role
from govbus.errors import (
    AuditLogCorrupt,
    InvalidIdentifier,
    InvalidRequest,
    KeyInvalid,
    SignatureInvalid,
)

ORIGIN = "ss1.test.govbus.kz/audit"


def test_key_files(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    key = generate_key_file(path)
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_key_file(path) == key
    with pytest.raises(KeyInvalid, match="already exists"):
        generate_key_file(path)
    with pytest.raises(KeyInvalid, match="cannot read"):
        load_key_file(tmp_path / "missing.key")
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 31)
    short.chmod(0o600)
    with pytest.raises(KeyInvalid, match="31 bytes"):
        load_key_file(short)
    path.chmod(0o640)
    with pytest.raises(KeyInvalid, match="readable by other users"):
        load_key_file(path)
    with pytest.raises(KeyInvalid, match="not a regular file"):
        load_key_file(tmp_path)


def test_pseudonym_is_keyed_hmac_of_a_valid_iin() -> None:
    import hmac

    key = os.urandom(32)
    iin = "850606400057"
    assert Pseudonymizer(key).pseudonym(iin) == hmac.new(key, iin.encode(), "sha256").digest()
    assert Pseudonymizer(key).pseudonym(iin) != Pseudonymizer(os.urandom(32)).pseudonym(iin)
    with pytest.raises(InvalidIdentifier):
        Pseudonymizer(key).pseudonym("123456789012")
    with pytest.raises(KeyInvalid):
        Pseudonymizer(b"short")


def test_record_cipher_binds_and_detects() -> None:
    cipher = RecordCipher(os.urandom(32))
    sealed = cipher.seal(b"header", b"aad")
    assert len(sealed) == 12 + 6 + 16 and cipher.open(sealed, b"aad") == b"header"
    assert cipher.seal(b"header", b"aad") != sealed, "a fresh nonce every time"
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), sealed[:10]):
        with pytest.raises(AuditLogCorrupt):
            cipher.open(bad, b"aad")
    with pytest.raises(AuditLogCorrupt):
        cipher.open(sealed, b"other record")
    with pytest.raises(AuditLogCorrupt):
        RecordCipher(os.urandom(32)).open(sealed, b"aad")


@pytest.mark.parametrize("algorithm", list(Algorithm), ids=["ecdsa", "ed25519"])
def test_checkpoint_note_round_trip(ca: CertificateAuthority, algorithm: Algorithm) -> None:
    issued = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459", algorithm=algorithm)
    signer = NoteSigner(ORIGIN, issued.signer(), issued.key.public_key())
    checkpoint = Checkpoint(ORIGIN, 20852163, hashlib.sha256(b"root").digest())
    text = checkpoint.text()
    assert text == f"{ORIGIN}\n20852163\n{base64.b64encode(checkpoint.root).decode()}\n"
    note = SignedNote(text, (signer.sign(text),)).render()
    lines = note.split("\n")
    assert lines[3] == "" and lines[4].startswith(f"\u2014 {ORIGIN} ")
    parsed, signed = parse_checkpoint_note(note)
    assert parsed == checkpoint and signed.signatures[0].key_id == signer.key.key_id
    assert verify_checkpoint(note, signer.key)[0] == checkpoint
    public = issued.key.public_key()
    if algorithm is Algorithm.ED25519:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        want = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()[:4]
    else:
        spki = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        want = hashlib.sha256(spki).digest()[:4]
    assert signer.key.key_id == want
    with pytest.raises(SignatureInvalid):
        verify_checkpoint(note.replace("20852163", "20852164"), signer.key)
    other = ca.issue_key(Role.SIGNING, "KZ/GOV/990240000016", algorithm=algorithm)
    with pytest.raises(SignatureInvalid, match="no signature from the log key"):
        verify_checkpoint(note, NoteKey(ORIGIN, other.key.public_key()))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_ecdsa_checkpoint_signature_checks_with_openssl(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = ca.issue_key(Role.SIGNING, "KZ/GOV/040340123459")
    signer = NoteSigner(ORIGIN, issued.signer(), issued.key.public_key())
    text = Checkpoint(ORIGIN, 5, bytes(32)).text()
    signature = signer.sign(text)
    (tmp_path / "body").write_text(text)
    (tmp_path / "sig").write_bytes(signature.signature)
    (tmp_path / "pub.pem").write_bytes(
        issued.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    args = ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig", "body"]
    assert subprocess.run(args, cwd=tmp_path, capture_output=True, check=False).returncode == 0
    (tmp_path / "body").write_text(text.replace("\n5\n", "\n6\n"))
    assert subprocess.run(args, cwd=tmp_path, capture_output=True, check=False).returncode != 0


@pytest.mark.parametrize(
    "note",
    [
        "",
        "no newline",
        "a\n\n",
        "a\nb\n\n\u2014 name\n",
        "a\n\n\u2014 na+me AAAAAAA=\n",
        "a\n\n\u2014 name !!!!\n",
        "a\n\n\u2014 name AAA=\n",
        "a\x01\n\n\u2014 name AAAAAAA=\n",
        "a\n\n- name AAAAAAA=\n",
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_note(note)


@pytest.mark.parametrize(
    "text",
    ["o\n5\n", "o\n05\nAA==\n", "o\n5\nAA==\n", "o o\n5\n" + "A" * 43 + "=\n", "o\n-1\nAA==\n"],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        Checkpoint.parse_text(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_note_parser_never_fails_untyped(data: bytes) -> None:
    try:
        note = parse_note(data)
        Checkpoint.parse_text(note.text)
    except InvalidRequest:
        pass
