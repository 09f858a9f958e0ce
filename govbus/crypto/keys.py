"""Signing keys: the `Signer` and `Verifier` interfaces and key files.

Every signature names its algorithm (`govbus.v1.SignatureAlgorithm`) and the
SHA-256 of the certificate whose key made it. Private keys live in PKCS#8 PEM
files encrypted with a passphrase, so `openssl` reads them too; a key is
decrypted only into memory. A hardware key (PKCS#11) fits behind `Signer`.

Nothing here logs or prints key material.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from govbus.errors import ConfigInvalid, KeyInvalid, PassphraseInvalid, SignatureInvalid
from govbus.pb.govbus.v1 import signature_pb2

__all__ = [
    "PASSPHRASE_ENV",
    "Algorithm",
    "KeySigner",
    "PrivateKey",
    "PublicKey",
    "PublicKeyVerifier",
    "Signer",
    "Verifier",
    "atomic_write",
    "generate_key",
    "load_private_key",
    "passphrase_from_env",
    "private_key_pem",
    "save_private_key",
]

PASSPHRASE_ENV = "GOVBUS_KEY_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_ECDSA = ec.ECDSA(hashes.SHA256())


class Algorithm(enum.Enum):
    ECDSA_P256_SHA256 = signature_pb2.ECDSA_P256_SHA256
    ED25519 = signature_pb2.ED25519

    @classmethod
    def parse(cls, text: str) -> Algorithm:
        names = {"ecdsa-p256": cls.ECDSA_P256_SHA256, "ed25519": cls.ED25519}
        try:
            return names[text.lower()]
        except KeyError:
            raise ConfigInvalid(
                f"unknown algorithm {text!r}; use one of {', '.join(names)}"
            ) from None

    @classmethod
    def of(cls, key: PrivateKey | PublicKey) -> Algorithm:
        if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
            return cls.ED25519
        if isinstance(key.curve, ec.SECP256R1):
            return cls.ECDSA_P256_SHA256
        raise KeyInvalid(f"unsupported key: curve {key.curve.name}; use P-256 or Ed25519")


@runtime_checkable
class Signer(Protocol):
    """Makes signatures. File keys today; a PKCS#11 token fits the same shape."""

    @property
    def algorithm(self) -> Algorithm: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, data: bytes) -> signature_pb2.Signature: ...


@runtime_checkable
class Verifier(Protocol):
    def verify(self, signature: signature_pb2.Signature, data: bytes) -> None:
        """Return if `signature` is valid over `data`; raise `SignatureInvalid` if not."""
        ...


def generate_key(algorithm: Algorithm = Algorithm.ECDSA_P256_SHA256) -> PrivateKey:
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


class KeySigner:
    """A `Signer` over an in-memory private key."""

    __slots__ = ("_algorithm", "_key", "_key_id", "_proto_alg")

    def __init__(self, key: PrivateKey, key_id: bytes) -> None:
        self._key = key
        self._key_id = key_id
        self._algorithm = Algorithm.of(key)
        self._proto_alg = self._algorithm.value

    @property
    def algorithm(self) -> Algorithm:
        return self._algorithm

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign_bytes(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        return self._key.sign(data, _ECDSA)

    def sign(self, data: bytes) -> signature_pb2.Signature:
        return signature_pb2.Signature(
            algorithm=self._proto_alg, key_id=self._key_id, value=self.sign_bytes(data)
        )


class PublicKeyVerifier:
    """A `Verifier` for one public key (the key of a certificate already validated)."""

    __slots__ = ("_algorithm", "_key", "key_id")

    def __init__(self, key: PublicKey, key_id: bytes = b"") -> None:
        self._key = key
        self._algorithm = Algorithm.of(key).value
        self.key_id = key_id

    def verify(self, signature: signature_pb2.Signature, data: bytes) -> None:
        if signature.algorithm != self._algorithm:
            raise SignatureInvalid(
                f"signature algorithm {signature.algorithm} does not match the key "
                f"({Algorithm(self._algorithm).name})"
            )
        if self.key_id and signature.key_id != self.key_id:
            raise SignatureInvalid("signature names another key than the certificate it came with")
        self.verify_bytes(signature.value, data)

    def verify_bytes(self, value: bytes, data: bytes) -> None:
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(value, data)
            else:
                self._key.verify(value, data, _ECDSA)
        except (InvalidSignature, ValueError):
            raise SignatureInvalid("signature does not verify: data or signature altered") from None


def passphrase_from_env(path: Path | None = None) -> bytes:
    """The key passphrase: from a file if given, else from $GOVBUS_KEY_PASSPHRASE."""
    if path is not None:
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigInvalid(f"cannot read passphrase file {path}: {exc.strerror}") from None
    else:
        text = os.environ.get(PASSPHRASE_ENV, "")
    if not text:
        raise ConfigInvalid(f"no key passphrase: set {PASSPHRASE_ENV} or pass --passphrase-file")
    return text.encode()


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_private_key(path: Path, key: PrivateKey, passphrase: bytes) -> None:
    if len(passphrase) < 8:
        raise ConfigInvalid("key passphrase must be at least 8 characters")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    atomic_write(path, pem, 0o600)


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PEM, for handing to gRPC in memory. Never write it to disk."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(path: Path, passphrase: bytes) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyInvalid(f"cannot read key file {path}: {exc.strerror}") from None
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in data:
        if b"PRIVATE KEY-----" in data:
            raise KeyInvalid(f"key file {path} is not encrypted; govbus keeps keys encrypted")
        raise KeyInvalid(f"key file {path} is not a PEM private key (corrupted or wrong file)")
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except ValueError as exc:
        if "password" in str(exc).lower():
            raise PassphraseInvalid(
                f"cannot decrypt {path}: wrong passphrase, or the file's content is damaged"
            ) from None
        raise KeyInvalid(f"key file {path} is corrupted: {exc}") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise KeyInvalid(f"key file {path} cannot be used: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyInvalid(f"key file {path} holds a {type(key).__name__}; use P-256 or Ed25519")
    Algorithm.of(key)
    return key
