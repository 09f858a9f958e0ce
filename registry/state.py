"""The registry's state directory: CA, its own keys, the operator's admin key, the database.

Layout of `<state>/`:

- `pki/` (or `--pki DIR`): the CA (govbus.crypto.pki.CertificateAuthority);
- `registry-tls.{key,cert}.pem`: TLS of both listeners (role server, name registry);
- `registry-signing.{key,cert}.pem`: signs the global configuration and the witness
  cosignatures (role registry, name registry);
- `admin/operator.{key,cert}.pem`: the first registry operator's admin certificate;
- `registry.db`: the SQLite store (unless PostgreSQL is used).

Keys are encrypted with the passphrase (`$GOVBUS_KEY_PASSPHRASE`). `init_state`
never overwrites an existing key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from govbus.crypto.keys import (
    KeySigner,
    atomic_write,
    load_private_key,
    private_key_pem,
    save_private_key,
)
from govbus.crypto.pki import (
    CertificateAuthority,
    Role,
    cert_fingerprint,
    certificate_der,
    certificate_pem,
    load_certificate,
)
from govbus.errors import ConfigInvalid, KeyInvalid

__all__ = ["DEFAULT_HOSTS", "RegistryKeys", "RegistryPaths", "init_state", "load_keys"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
REGISTRY_NAME = "registry"


@dataclass(frozen=True, slots=True)
class RegistryPaths:
    root: Path
    pki: Path

    @classmethod
    def of(cls, state_dir: Path, pki_dir: Path | None = None) -> RegistryPaths:
        return cls(state_dir, pki_dir or state_dir / "pki")

    @property
    def ca_cert(self) -> Path:
        return self.pki / CertificateAuthority.CERT

    @property
    def tls_key(self) -> Path:
        return self.root / "registry-tls.key.pem"

    @property
    def tls_cert(self) -> Path:
        return self.root / "registry-tls.cert.pem"

    @property
    def signing_key(self) -> Path:
        return self.root / "registry-signing.key.pem"

    @property
    def signing_cert(self) -> Path:
        return self.root / "registry-signing.cert.pem"

    @property
    def operator_key(self) -> Path:
        return self.root / "admin" / "operator.key.pem"

    @property
    def operator_cert(self) -> Path:
        return self.root / "admin" / "operator.cert.pem"

    @property
    def database(self) -> Path:
        return self.root / "registry.db"

    def initialised(self) -> bool:
        return self.signing_cert.exists() and self.tls_cert.exists()


@dataclass(frozen=True)
class RegistryKeys:
    """The registry's keys, decrypted into memory."""

    ca: CertificateAuthority
    tls_key_pem: bytes
    tls_cert_pem: bytes
    signer: KeySigner
    signing_cert: x509.Certificate

    @property
    def ca_pem(self) -> bytes:
        return certificate_pem(self.ca.certificate)

    @property
    def signing_cert_der(self) -> bytes:
        return certificate_der(self.signing_cert)


def init_state(
    state_dir: Path,
    passphrase: bytes,
    *,
    pki_dir: Path | None = None,
    hosts: Sequence[str] = (),
) -> RegistryPaths:
    """Create the CA (unless one is there), the registry's keys and the operator's admin key."""
    paths = RegistryPaths.of(state_dir, pki_dir)
    if paths.initialised():
        raise ConfigInvalid(f"the registry in {state_dir} is already initialised")
    if (paths.pki / CertificateAuthority.KEY).exists():
        ca = CertificateAuthority.open(paths.pki, passphrase)
    else:
        ca = CertificateAuthority.init(paths.pki, passphrase)
    all_hosts = list(dict.fromkeys([*DEFAULT_HOSTS, *hosts]))
    tls = ca.issue_key(Role.SERVER, REGISTRY_NAME, hosts=all_hosts, organization="govbus")
    signing = ca.issue_key(Role.REGISTRY, REGISTRY_NAME, organization="govbus")
    operator = ca.issue_key(Role.ADMIN, "operator", organization="govbus")
    for key_path, cert_path, issued in (
        (paths.tls_key, paths.tls_cert, tls),
        (paths.signing_key, paths.signing_cert, signing),
        (paths.operator_key, paths.operator_cert, operator),
    ):
        save_private_key(key_path, issued.key, passphrase)
        atomic_write(cert_path, certificate_pem(issued.certificate))
    return paths


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_keys(paths: RegistryPaths, passphrase: bytes) -> RegistryKeys:
    if not paths.initialised():
        raise ConfigInvalid(
            f"no registry in {paths.root}: run `govbus registry init --state {paths.root}` "
            "(or `govbus registry serve --init`)"
        )
    ca = CertificateAuthority.open(paths.pki, passphrase)
    anchor = ca.trust_anchor()
    tls_key = load_private_key(paths.tls_key, passphrase)
    tls_cert = load_certificate(paths.tls_cert)
    anchor.validate(tls_cert, role=Role.SERVER)
    signing_key = load_private_key(paths.signing_key, passphrase)
    signing_cert = load_certificate(paths.signing_cert)
    anchor.validate(signing_cert, role=Role.REGISTRY)
    for key, cert, what in ((tls_key, tls_cert, "TLS"), (signing_key, signing_cert, "signing")):
        if _spki(cert.public_key()) != _spki(key.public_key()):
            raise KeyInvalid(f"the registry's {what} key and certificate do not belong together")
    return RegistryKeys(
        ca=ca,
        tls_key_pem=private_key_pem(tls_key),
        tls_cert_pem=certificate_pem(tls_cert),
        signer=KeySigner(signing_key, cert_fingerprint(signing_cert)),
        signing_cert=signing_cert,
    )
