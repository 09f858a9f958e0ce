"""Bring a bus up in a few calls: for tests of other components, the demo and operators.

A registry is started as a process (`serve_args` gives the argv for
`govbus …`; `govbus.process.GovbusProcess` runs it and reads its ready file), then:

```python
admin = AdminClient.operator(registry.info, passphrase)
admin.add_member("KZ/GOV/040340123459", "ГБД ФЛ")
admin.add_subsystem("KZ/GOV/040340123459/gbdfl", "Person registry")
creds = register_server(admin, "KZ/GOV/040340123459/ss1", "127.0.0.1:7001", tmp / "ss1", pw)
admin.publish_service("KZ/GOV/040340123459/gbdfl/person/v1", "kz.gov.x.v1.Persons",
                      persons_pb2.DESCRIPTOR, [creds.server_id], personal_data=True)
admin.grant("KZ/GOV/040340123459/gbdfl/person/v1", "KZ/GOV/990140000017/con")
version = admin.wait_published()      # a signed configuration with all of it is served
```

Keys are made here, on the caller's side, and only certificate requests travel
to the registry; private keys are written encrypted (govbus.crypto.keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from govbus.crypto.keys import (
    Algorithm,
    PrivateKey,
    atomic_write,
    generate_key,
    save_private_key,
)
from govbus.ids import ServerId
from registry.client import AdminClient

__all__ = [
    "ServerCredentials",
    "ServerKeyFiles",
    "make_csr",
    "make_server_keys",
    "register_server",
    "request_admin_certificate",
    "serve_args",
]


def serve_args(
    state_dir: Path,
    *,
    listen: str = "127.0.0.1:0",
    admin_listen: str = "127.0.0.1:0",
    conf_ttl: float | None = None,
    regen_interval: float | None = 0.2,
    resign_interval: float | None = None,
    database: str | None = None,
    db_schema: str | None = None,
    extensions: Sequence[str] = (),
) -> list[str]:
    """Arguments of `govbus` for a registry that initialises its state on first start.

    Short regeneration by default, so tests wait little; pass `--ready-file` yourself
    (GovbusProcess does)."""
    args = [
        "registry",
        "serve",
        "--state",
        str(state_dir),
        "--init",
        "--listen",
        listen,
        "--admin-listen",
        admin_listen,
    ]
    for flag, value in (
        ("--conf-ttl", conf_ttl),
        ("--regen-interval", regen_interval),
        ("--resign-interval", resign_interval),
        ("--db", database),
        ("--db-schema", db_schema),
    ):
        if value is not None:
            args += [flag, str(value)]
    for spec in extensions:
        args += ["--extension", spec]
    return args


def make_csr(key: PrivateKey, name: str) -> bytes:
    """A PEM certificate request for `key` (the registry decides the certificate's names)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class ServerKeyFiles:
    """A security server's new keys (encrypted) and their certificate requests."""

    directory: Path

    @property
    def tls_key(self) -> Path:
        return self.directory / "tls.key.pem"

    @property
    def tls_csr(self) -> Path:
        return self.directory / "tls.csr.pem"

    @property
    def signing_key(self) -> Path:
        return self.directory / "signing.key.pem"

    @property
    def signing_csr(self) -> Path:
        return self.directory / "signing.csr.pem"


@dataclass(frozen=True, slots=True)
class ServerCredentials(ServerKeyFiles):
    """What a registered security server runs with: its key files and the certificates the
    registry issued for them, in the same directory (every path is a PEM file)."""

    server_id: str
    member_id: str
    address: str

    @property
    def tls_cert(self) -> Path:
        return self.directory / "tls.cert.pem"

    @property
    def signing_cert(self) -> Path:
        return self.directory / "signing.cert.pem"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.cert.pem"


def make_server_keys(
    server_id: str,
    directory: Path,
    passphrase: bytes,
    *,
    signing_algorithm: Algorithm = Algorithm.ECDSA_P256_SHA256,
) -> ServerKeyFiles:
    """New TLS (P-256) and member signing keys for a server, encrypted, with CSRs."""
    server = ServerId.parse(server_id)
    files = ServerKeyFiles(directory)
    tls = generate_key(Algorithm.ECDSA_P256_SHA256)
    signing = generate_key(signing_algorithm)
    save_private_key(files.tls_key, tls, passphrase)
    save_private_key(files.signing_key, signing, passphrase)
    atomic_write(files.tls_csr, make_csr(tls, str(server)))
    atomic_write(files.signing_csr, make_csr(signing, str(server.member)))
    return files


def register_server(
    admin: AdminClient,
    server_id: str,
    address: str,
    directory: Path,
    passphrase: bytes,
    *,
    replace: bool = False,
) -> ServerCredentials:
    """Make the server's keys in `directory`, register it, and store its certificates."""
    files = make_server_keys(server_id, directory, passphrase)
    answer = admin.register_server(
        server_id,
        address,
        files.tls_csr.read_bytes(),
        files.signing_csr.read_bytes(),
        replace=replace,
    )
    credentials = ServerCredentials(
        directory, server_id=answer.server.id, member_id=answer.server.owner, address=address
    )
    atomic_write(credentials.tls_cert, answer.tls_certificate)
    atomic_write(credentials.signing_cert, answer.signing_certificate)
    atomic_write(credentials.ca_cert, answer.ca_certificate)
    return credentials


def request_admin_certificate(
    admin: AdminClient, name: str, out_prefix: Path, passphrase: bytes
) -> tuple[Path, Path]:
    """Issue an admin certificate for `name` ("operator" or a member id) through the registry
    operator's client; writes PREFIX.key.pem (encrypted) and PREFIX.cert.pem."""
    key = generate_key(Algorithm.ECDSA_P256_SHA256)
    answer = admin.issue_admin_certificate(name, make_csr(key, name))
    key_path = out_prefix.with_name(out_prefix.name + ".key.pem")
    cert_path = out_prefix.with_name(out_prefix.name + ".cert.pem")
    save_private_key(key_path, key, passphrase)
    atomic_write(cert_path, answer.certificate)
    return key_path, cert_path
