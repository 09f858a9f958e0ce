"""C2SP signed notes, transparency-log checkpoints and witness cosignatures.

A checkpoint (c2sp.org/tlog-checkpoint) is the note text

    <origin>\\n<tree size>\\n<base64 root hash>\\n

followed by a blank line and signature lines `— <key name> base64(key ID || sig)`
(c2sp.org/signed-note). The log's key name is its origin.

How each signature is identified (the 4-byte key ID is the first four bytes of
SHA-256 of the material named; "name" is the key name):

- log key, Ed25519 — type 0x01; ID over name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key;
  the signature is Ed25519 over the note text.
- log key, ECDSA P-256 — type 0x02 as transparency-dev/witness implements it; ID
  over the DER SubjectPublicKeyInfo alone; the signature is DER ECDSA-SHA256 over
  the note text.
- witness, Ed25519 — type 0x04 (c2sp.org/tlog-cosignature); ID over name ‖ 0x0A ‖
  0x04 ‖ 32-byte public key; the signature is u64 time ‖ Ed25519(cosigned message).
- witness, ECDSA P-256 — type 0xFF with the long identifier
  "govbus/cosignature/ecdsa-p256/v1"; ID over name ‖ 0x0A ‖ 0xFF ‖ identifier ‖
  DER SubjectPublicKeyInfo; the signature is u64 time ‖ DER ECDSA-SHA256(cosigned
  message).

The cosigned message is c2sp.org/tlog-cosignature's `cosignature/v1\\ntime <t>\\n`
followed by the checkpoint text. Ed25519 witnesses are exactly that spec; the
spec defines no ECDSA cosignature, so an ECDSA witness uses the same message
and timestamped layout under the signed-note type 0xFF with a long identifier.

An ECDSA log signature is a plain DER signature over the note text, so
`openssl dgst -sha256 -verify key.pem -signature sig.der body.txt` checks it.

Pure: parsing, formatting, signing through a `Signer` and verifying. No I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from govbus.crypto.keys import Algorithm, PublicKey, PublicKeyVerifier, Signer
from govbus.errors import InvalidRequest, SignatureInvalid

__all__ = [
    "COSIGNATURE_ECDSA_ID",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteKey",
    "NoteSignature",
    "NoteSigner",
    "SignedNote",
    "cosigned_message",
    "parse_checkpoint_note",
    "parse_note",
    "verify_checkpoint",
]

EM_DASH = "\u2014"
MAX_SIGNATURES = 32
MAX_NOTE_BYTES = 64 * 1024
COSIGNATURE_ECDSA_ID = b"govbus/cosignature/ecdsa-p256/v1"
_NAME = re.compile(r"[^\s+]+")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidRequest(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes  # 4 bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{EM_DASH} {self.name} {blob}\n"


@dataclass(frozen=True, slots=True)
class SignedNote:
    text: str  # ends with a newline; what every signature covers
    signatures: tuple[NoteSignature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def with_signatures(self, extra: Iterable[NoteSignature]) -> SignedNote:
        known = set(self.signatures)
        added = tuple(s for s in extra if s not in known)
        return SignedNote(self.text, self.signatures + added)


def _check_text(text: str) -> None:
    if _CONTROL.search(text):
        raise InvalidRequest("note contains control characters other than newline")


def parse_note(data: str | bytes) -> SignedNote:
    """Parse a signed note; `InvalidRequest` on any deviation from the format."""
    if isinstance(data, bytes):
        if len(data) > MAX_NOTE_BYTES:
            raise InvalidRequest(f"note is larger than {MAX_NOTE_BYTES} bytes")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("note is not valid UTF-8") from None
    if len(data) > MAX_NOTE_BYTES:
        raise InvalidRequest(f"note is larger than {MAX_NOTE_BYTES} bytes")
    _check_text(data)
    if not data.endswith("\n"):
        raise InvalidRequest("note does not end with a newline")
    split = data.rfind("\n\n")
    if split < 0:
        raise InvalidRequest("note has no blank line before its signatures")
    text, sig_block = data[: split + 1], data[split + 2 :]
    lines = sig_block.split("\n")[:-1]
    if not lines:
        raise InvalidRequest("note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidRequest(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH or not _NAME.fullmatch(parts[1]):
            raise InvalidRequest(f"malformed note signature line {line[:80]!r}")
        blob = _b64decode(parts[2], f"signature of {parts[1]}")
        if len(blob) < 5:
            raise InvalidRequest(f"signature of {parts[1]} is too short")
        signatures.append(NoteSignature(parts[1], blob[:4], blob[4:]))
    return SignedNote(text, tuple(signatures))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        root = base64.b64encode(self.root).decode("ascii")
        extra = "".join(f"{line}\n" for line in self.extensions)
        return f"{self.origin}\n{self.size}\n{root}\n{extra}"

    @classmethod
    def parse_text(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise InvalidRequest("checkpoint text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or any(not line for line in lines):
            raise InvalidRequest("checkpoint needs origin, size and root lines, none empty")
        origin, size_text, root_text = lines[:3]
        if not _NAME.fullmatch(origin):
            raise InvalidRequest(f"checkpoint origin {origin[:80]!r} has spaces or '+'")
        if not _SIZE.fullmatch(size_text) or int(size_text) >= 1 << 63:
            raise InvalidRequest(f"checkpoint size {size_text[:30]!r} is not a decimal size")
        root = _b64decode(root_text, "checkpoint root")
        if len(root) != 32:
            raise InvalidRequest(f"checkpoint root is {len(root)} bytes, not 32")
        return cls(origin, int(size_text), root, tuple(lines[3:]))


def parse_checkpoint_note(data: str | bytes) -> tuple[Checkpoint, SignedNote]:
    note = parse_note(data)
    return Checkpoint.parse_text(note.text), note


def _spki(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _raw_ed25519(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    """What a witness signs: c2sp.org/tlog-cosignature `cosignature/v1` message."""
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


class NoteKey:
    """A trusted verifier key: a name, a public key, and whether it cosigns (a witness)."""

    __slots__ = ("_verifier", "cosigner", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: PublicKey, *, cosigner: bool = False) -> None:
        if not _NAME.fullmatch(name):
            raise InvalidRequest(f"note key name {name!r} is empty or has spaces or '+'")
        self.name = name
        self.public_key = public_key
        self.cosigner = cosigner
        self._verifier = PublicKeyVerifier(public_key)
        ed = isinstance(public_key, ed25519.Ed25519PublicKey)
        if not ed and not (
            isinstance(public_key, ec.EllipticCurvePublicKey)
            and isinstance(public_key.curve, ec.SECP256R1)
        ):
            raise InvalidRequest("note keys must be Ed25519 or ECDSA P-256")
        prefix = name.encode() + b"\n"
        if cosigner:
            material = (
                b"\x04" + _raw_ed25519(public_key)
                if isinstance(public_key, ed25519.Ed25519PublicKey)
                else b"\xff" + COSIGNATURE_ECDSA_ID + _spki(public_key)
            )
            digest = hashlib.sha256(prefix + material).digest()
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            digest = hashlib.sha256(prefix + b"\x01" + _raw_ed25519(public_key)).digest()
        else:
            digest = hashlib.sha256(_spki(public_key)).digest()
        self.key_id = digest[:4]

    @property
    def algorithm(self) -> Algorithm:
        return Algorithm.of(self.public_key)

    def matches(self, signature: NoteSignature) -> bool:
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, text: str, signature: NoteSignature) -> int | None:
        """Raise `SignatureInvalid` unless `signature` is valid over `text`; for a
        cosignature return its timestamp."""
        if not self.matches(signature):
            raise SignatureInvalid(f"signature is not from key {self.name}")
        if self.cosigner:
            if len(signature.signature) < 9:
                raise SignatureInvalid(f"cosignature of {self.name} is too short")
            (timestamp,) = struct.unpack(">Q", signature.signature[:8])
            if timestamp >= 1 << 63:
                raise SignatureInvalid(f"cosignature of {self.name} has an invalid time")
            message = cosigned_message(text, timestamp)
            self._verify(signature.signature[8:], message)
            return int(timestamp)
        self._verify(signature.signature, text.encode())
        return None

    def _verify(self, value: bytes, message: bytes) -> None:
        try:
            self._verifier.verify_bytes(value, message)
        except SignatureInvalid:
            raise SignatureInvalid(f"note signature of {self.name} does not verify") from None


class NoteSigner:
    """Signs notes with a govbus `Signer` under a key name (a log's origin, or a witness)."""

    __slots__ = ("key", "signer")

    def __init__(
        self, name: str, signer: Signer, public_key: PublicKey, *, cosigner: bool = False
    ) -> None:
        self.key = NoteKey(name, public_key, cosigner=cosigner)
        if signer.algorithm is not self.key.algorithm:
            raise InvalidRequest("signer and public key are of different algorithms")
        self.signer = signer

    @property
    def name(self) -> str:
        return self.key.name

    def sign(self, text: str) -> NoteSignature:
        if self.key.cosigner:
            raise InvalidRequest("a cosigner signs with cosign(), not sign()")
        _check_text(text)
        value = self.signer.sign(text.encode()).value
        return NoteSignature(self.key.name, self.key.key_id, value)

    def cosign(self, text: str, timestamp: int) -> NoteSignature:
        if not self.key.cosigner:
            raise InvalidRequest("only a cosigner key cosigns")
        value = self.signer.sign(cosigned_message(text, timestamp)).value
        return NoteSignature(self.key.name, self.key.key_id, struct.pack(">Q", timestamp) + value)


def verify_checkpoint(
    data: str | bytes | SignedNote, log_key: NoteKey, witnesses: Sequence[NoteKey] = ()
) -> tuple[Checkpoint, SignedNote, list[str]]:
    """Parse and verify a checkpoint signed by `log_key`; returns the checkpoint, the note
    and the names of the witnesses whose cosignatures verified.

    Signatures from unknown keys are ignored (the note format requires it); a signature
    from a known key that does not verify rejects the whole note.
    """
    note = data if isinstance(data, SignedNote) else parse_note(data)
    checkpoint = Checkpoint.parse_text(note.text)
    if checkpoint.origin != log_key.name:
        raise SignatureInvalid(
            f"checkpoint is for log {checkpoint.origin!r}, the key is for {log_key.name!r}"
        )
    signed = False
    cosigned: list[str] = []
    for signature in note.signatures:
        if log_key.matches(signature):
            log_key.verify(note.text, signature)
            signed = True
            continue
        for witness in witnesses:
            if witness.matches(signature):
                witness.verify(note.text, signature)
                cosigned.append(witness.name)
    if not signed:
        raise SignatureInvalid(
            f"checkpoint carries no signature from the log key {log_key.name} "
            f"(key ID {log_key.key_id.hex()})"
        )
    return checkpoint, note, cosigned
