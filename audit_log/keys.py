"""The log's two secret keys and what they do: pseudonyms and record encryption.

- The *pseudonym key* turns a subject IIN into HMAC-SHA256(key, IIN): the same
  person always gets the same pseudonym in one deployment, so an auditor holding
  the key can find every record about them, while someone who copies the
  database cannot reverse or even test a guessed IIN.
- The *data key* seals the signed envelope header (which names the subject) and,
  when configured, the bodies: AES-256-GCM, 12-byte random nonce, stored as
  nonce || ciphertext || tag.

Both are files of exactly 32 random bytes with mode 0600, kept outside the
database. This module never logs, prints or stores key bytes anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from govbus.crypto.keys import atomic_write
from govbus.errors import AuditLogCorrupt, KeyInvalid
from govbus.ids import Iin

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "Pseudonymizer",
    "RecordCipher",
    "generate_key_file",
    "key_check",
    "load_key_file",
]

KEY_SIZE = 32
NONCE_SIZE = 12
_TAG_SIZE = 16


def generate_key_file(path: Path) -> bytes:
    """Write a new key of 32 random bytes to `path` (mode 0600); refuse to overwrite."""
    if path.exists():
        raise KeyInvalid(f"key file {path} already exists; refusing to overwrite a key")
    key = os.urandom(KEY_SIZE)
    atomic_write(path, key, 0o600)
    return key


def load_key_file(path: Path) -> bytes:
    """The 32 key bytes of `path`, or `KeyInvalid` saying what is wrong with the file."""
    try:
        info = path.stat()
    except OSError as exc:
        raise KeyInvalid(f"cannot read key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyInvalid(f"key file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise KeyInvalid(
            f"key file {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise KeyInvalid(f"cannot read key file {path}: {exc.strerror}") from None
    if len(key) != KEY_SIZE:
        raise KeyInvalid(
            f"key file {path} holds {len(key)} bytes, not {KEY_SIZE}: wrong or damaged file"
        )
    return key


def _check_key(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise KeyInvalid(f"{what} must be {KEY_SIZE} bytes")
    return key


def key_check(key: bytes) -> bytes:
    """A public fingerprint of a key, stored with a log so that a wrong key is named as such
    (and not mistaken for a damaged record). Reveals nothing usable about the key."""
    return hmac.new(key, b"govbus audit key check v1", hashlib.sha256).digest()[:8]


class Pseudonymizer:
    """HMAC-SHA256(pseudonym key, IIN as ASCII) for a validated IIN."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = _check_key(key, "pseudonym key")

    def pseudonym(self, iin: str | Iin) -> bytes:
        value = iin.value if isinstance(iin, Iin) else Iin.parse(iin).value
        return hmac.new(self._key, value.encode("ascii"), hashlib.sha256).digest()

    @property
    def check(self) -> bytes:
        return key_check(self._key)


class RecordCipher:
    """AES-256-GCM under the data key; `aad` binds a ciphertext to its record."""

    __slots__ = ("_aead", "_check")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(_check_key(key, "data key"))
        self._check = key_check(key)

    @property
    def check(self) -> bytes:
        return self._check

    def seal(self, plain: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def open(self, sealed: bytes, aad: bytes = b"") -> bytes:
        if len(sealed) < NONCE_SIZE + _TAG_SIZE:
            raise AuditLogCorrupt(f"sealed value is {len(sealed)} bytes: too short to be one")
        try:
            return self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
        except InvalidTag:
            raise AuditLogCorrupt(
                "sealed value does not decrypt: altered, bound to another record, "
                "or sealed under another data key"
            ) from None
