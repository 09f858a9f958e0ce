"""The PKI of govbus: a certificate authority, certificate profiles and validation.

The registry runs the CA. It issues certificates by role; the role and the bus
identity are written into a URI subject alternative name
`urn:govbus:<role>:<id>` so that a verifier reads who a certificate speaks for
without parsing free-text names:

| role       | for                                   | key usage / extended key usage        |
|------------|---------------------------------------|----------------------------------------|
| signing    | a member's message signatures         | digitalSignature, nonRepudiation       |
| server     | a security server's mutual TLS        | digitalSignature; serverAuth+clientAuth |
| registry   | global configuration, witness cosigns | digitalSignature, nonRepudiation       |
| admin      | registry administration over mTLS     | digitalSignature; clientAuth           |
| citizen    | a person's own EDS (consent)          | digitalSignature, nonRepudiation       |
| operator   | a ЦОН operator                        | digitalSignature; clientAuth           |
| consent    | the consent service's signatures      | digitalSignature, nonRepudiation       |

`TrustAnchor.validate` checks issuer signature, validity window, revocation by
serial, role and key usage, and caches the outcome per certificate for the
hot path. It never does I/O.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import ipaddress
import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from govbus.crypto.keys import (
    Algorithm,
    KeySigner,
    PrivateKey,
    PublicKey,
    PublicKeyVerifier,
    atomic_write,
    generate_key,
    load_private_key,
    save_private_key,
)
from govbus.errors import (
    CertificateExpired,
    CertificateInvalid,
    CertificateRevoked,
    ConfigInvalid,
    KeyInvalid,
)

__all__ = [
    "URN_PREFIX",
    "CertificateAuthority",
    "Identity",
    "IssuedKey",
    "Role",
    "TrustAnchor",
    "cert_fingerprint",
    "certificate_der",
    "certificate_pem",
    "load_certificate",
    "load_certificates",
]

URN_PREFIX = "urn:govbus:"


class Role(enum.Enum):
    SIGNING = "signing"
    SERVER = "server"
    REGISTRY = "registry"
    ADMIN = "admin"
    CITIZEN = "citizen"
    OPERATOR = "operator"
    CONSENT = "consent"


_NON_REPUDIATION = {Role.SIGNING, Role.REGISTRY, Role.CITIZEN, Role.CONSENT}
_CLIENT_AUTH = {Role.ADMIN, Role.OPERATOR}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a validated certificate speaks for."""

    role: Role
    name: str  # the bus id: member, server, IIN, operator, …
    serial: int
    fingerprint: bytes
    not_after: dt.datetime
    public_key: PublicKey
    _verifier: PublicKeyVerifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: identities are cached per certificate on the exchange path.
        object.__setattr__(self, "_verifier", PublicKeyVerifier(self.public_key, self.fingerprint))

    def verifier(self) -> PublicKeyVerifier:
        return self._verifier


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: PrivateKey
    certificate: x509.Certificate

    def signer(self) -> KeySigner:
        return KeySigner(self.key, cert_fingerprint(self.certificate))


def cert_fingerprint(cert: x509.Certificate | bytes) -> bytes:
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).digest()


def certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificate(data: bytes | Path) -> x509.Certificate:
    """One certificate from PEM or DER bytes, or from a file."""
    source = str(data) if isinstance(data, Path) else "certificate bytes"
    if isinstance(data, Path):
        try:
            data = data.read_bytes()
        except OSError as exc:
            raise KeyInvalid(f"cannot read certificate {source}: {exc.strerror}") from None
    try:
        # cryptography only warns about some malformed certificates (a non-positive
        # serial); a certificate of this bus is never like that, so refuse it.
        with warnings.catch_warnings():
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            if data.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
    # InvalidVersion is not a ValueError: a flipped bit in the version field raises it.
    except (ValueError, x509.InvalidVersion, CryptographyDeprecationWarning) as exc:
        raise CertificateInvalid(f"{source} is not a valid X.509 certificate: {exc}") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyInvalid(f"cannot read certificates {path}: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise CertificateInvalid(f"{path} holds no valid PEM certificates: {exc}") from None


def _identity_uri(cert: x509.Certificate) -> tuple[Role, str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateInvalid(
            f"certificate {cert.serial_number:x} has no govbus identity (no subject alt name)"
        ) from None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(URN_PREFIX):
            role_text, _, name = uri[len(URN_PREFIX) :].partition(":")
            try:
                return Role(role_text), name
            except ValueError:
                break
    raise CertificateInvalid(
        f"certificate {cert.serial_number:x} has no govbus identity URI ({URN_PREFIX}<role>:<id>)"
    )


class TrustAnchor:
    """Validates certificates issued directly by one of the given CA certificates.

    Immutable once built: a new revocation list means a new anchor (it comes
    with a new global configuration).
    """

    def __init__(
        self, ca_certificates: Sequence[x509.Certificate], revoked_serials: Iterable[int] = ()
    ) -> None:
        if not ca_certificates:
            raise ConfigInvalid("a trust anchor needs at least one CA certificate")
        self._cas = {ca.subject.public_bytes(): ca for ca in ca_certificates}
        self.ca_certificates = tuple(ca_certificates)
        self.revoked = frozenset(revoked_serials)
        self._cache: dict[bytes, tuple[Identity, x509.Certificate]] = {}

    def with_revoked(self, revoked_serials: Iterable[int]) -> TrustAnchor:
        return TrustAnchor(self.ca_certificates, revoked_serials)

    def validate(
        self,
        cert: x509.Certificate | bytes,
        *,
        role: Role | None = None,
        at: dt.datetime | None = None,
    ) -> Identity:
        """The identity of a valid certificate; raise a `Certificate*` error otherwise.

        `cert` may be DER bytes; results for the same bytes are cached, but the
        time window and revocation are checked on every call.
        """
        der = cert if isinstance(cert, bytes) else certificate_der(cert)
        cached = self._cache.get(der)
        if cached is None:
            parsed = load_certificate(der) if isinstance(cert, bytes) else cert
            try:
                cached = (self._validate_static(parsed, der), parsed)
            # cryptography parses names and extensions lazily: damage inside them
            # surfaces only here, as one of these.
            except (
                ValueError,
                TypeError,
                x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType,
            ) as exc:
                raise CertificateInvalid(f"certificate is malformed: {exc}") from None
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[der] = cached
        identity, parsed = cached
        now = at or dt.datetime.now(dt.UTC)
        if identity.serial in self.revoked:
            raise CertificateRevoked(
                f"certificate {identity.serial:x} ({identity.role.value} {identity.name}) "
                "is revoked"
            )
        if now > identity.not_after:
            raise CertificateExpired(
                f"certificate {identity.serial:x} ({identity.role.value} {identity.name}) "
                f"expired at {identity.not_after:%Y-%m-%d %H:%M:%S} UTC"
            )
        if now < parsed.not_valid_before_utc:
            raise CertificateInvalid(
                f"certificate {identity.serial:x} is not valid before "
                f"{parsed.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
            )
        if role is not None and identity.role is not role:
            raise CertificateInvalid(
                f"certificate {identity.serial:x} is for role {identity.role.value}, "
                f"not {role.value}"
            )
        return identity

    def _validate_static(self, cert: x509.Certificate, der: bytes) -> Identity:
        ca = self._cas.get(cert.issuer.public_bytes())
        if ca is None:
            raise CertificateInvalid(
                f"certificate {cert.serial_number:x} was not issued by a trusted CA "
                f"(issuer {cert.issuer.rfc4514_string()})"
            )
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):
            raise CertificateInvalid(
                f"certificate {cert.serial_number:x} does not verify against CA "
                f"{ca.subject.rfc4514_string()}: forged or from another CA with the same name"
            ) from None
        role, name = _identity_uri(cert)
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            raise CertificateInvalid(
                f"certificate {cert.serial_number:x} has no key usage"
            ) from None
        if not usage.digital_signature:
            raise CertificateInvalid(f"certificate {cert.serial_number:x} may not sign")
        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise CertificateInvalid(f"certificate {cert.serial_number:x} has an unsupported key")
        Algorithm.of(public_key)
        return Identity(
            role=role,
            name=name,
            serial=cert.serial_number,
            fingerprint=hashlib.sha256(der).digest(),
            not_after=cert.not_valid_after_utc,
            public_key=public_key,
        )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ")]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]))
    return x509.Name(attrs)


def _sign_hash(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


class CertificateAuthority:
    """The registry's CA: a directory with the encrypted CA key, its certificate, the
    issued-certificate index and the revocation list.

    Layout: `ca.key.pem` (encrypted), `ca.cert.pem`, `issued.json`, `revoked.json`.
    """

    KEY = "ca.key.pem"
    CERT = "ca.cert.pem"
    ISSUED = "issued.json"
    REVOKED = "revoked.json"

    def __init__(self, directory: Path, key: PrivateKey, certificate: x509.Certificate) -> None:
        self.directory = directory
        self._key = key
        self.certificate = certificate

    @classmethod
    def init(
        cls,
        directory: Path,
        passphrase: bytes,
        *,
        name: str = "govbus Root CA",
        algorithm: Algorithm = Algorithm.ECDSA_P256_SHA256,
        days: int = 3650,
        now: dt.datetime | None = None,
    ) -> CertificateAuthority:
        if (directory / cls.KEY).exists():
            raise ConfigInvalid(f"a CA already exists in {directory}; refusing to overwrite it")
        key = generate_key(algorithm)
        now = now or dt.datetime.now(dt.UTC)
        subject = _name(name, "govbus")
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, _sign_hash(key))
        )
        directory.mkdir(parents=True, exist_ok=True)
        save_private_key(directory / cls.KEY, key, passphrase)
        atomic_write(directory / cls.CERT, certificate_pem(cert))
        atomic_write(directory / cls.ISSUED, b"[]\n")
        atomic_write(directory / cls.REVOKED, b"[]\n")
        return cls(directory, key, cert)

    @classmethod
    def open(cls, directory: Path, passphrase: bytes) -> CertificateAuthority:
        if not (directory / cls.KEY).exists():
            raise ConfigInvalid(f"no CA in {directory}: run `govbus pki init --dir {directory}`")
        key = load_private_key(directory / cls.KEY, passphrase)
        cert = load_certificate(directory / cls.CERT)
        if cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise KeyInvalid(f"CA key and certificate in {directory} do not belong together")
        return cls(directory, key, cert)

    # --- issuing ---------------------------------------------------------------------

    def issue(
        self,
        role: Role,
        name: str,
        public_key: PublicKey,
        *,
        organization: str | None = None,
        hosts: Sequence[str] = (),
        days: int = 730,
        now: dt.datetime | None = None,
    ) -> x509.Certificate:
        """Issue a certificate for `public_key` speaking for `name` in `role`."""
        if not name or any(c in name for c in "\n\r\x00"):
            raise ConfigInvalid(f"certificate name {name!r} is empty or has control characters")
        now = now or dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(f"{URN_PREFIX}{role.value}:{name}")
        ]
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=role in _NON_REPUDIATION,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name, organization))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(
                min(now + dt.timedelta(days=days), self.certificate.not_valid_after_utc)
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if role is Role.SERVER:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        elif role in _CLIENT_AUTH:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self._key, _sign_hash(self._key))
        self._record(cert, role, name)
        return cert

    def issue_key(
        self,
        role: Role,
        name: str,
        *,
        algorithm: Algorithm = Algorithm.ECDSA_P256_SHA256,
        organization: str | None = None,
        hosts: Sequence[str] = (),
        days: int = 730,
        now: dt.datetime | None = None,
    ) -> IssuedKey:
        """Generate a key pair and issue its certificate (for tests, demo and `pki issue`)."""
        if role is Role.SERVER and algorithm is Algorithm.ED25519:
            # gRPC's TLS stack does not negotiate Ed25519 certificates on every platform.
            raise ConfigInvalid("security server TLS keys must be ECDSA P-256")
        key = generate_key(algorithm)
        cert = self.issue(
            role, name, key.public_key(), organization=organization, hosts=hosts, days=days, now=now
        )
        return IssuedKey(key, cert)

    def issue_from_csr(
        self, role: Role, name: str, csr_pem: bytes, *, hosts: Sequence[str] = (), days: int = 730
    ) -> x509.Certificate:
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CertificateInvalid(f"not a valid PEM certificate request: {exc}") from None
        if not csr.is_signature_valid:
            raise CertificateInvalid("certificate request signature does not verify")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise CertificateInvalid("certificate request key must be P-256 or Ed25519")
        Algorithm.of(public_key)
        return self.issue(role, name, public_key, hosts=hosts, days=days)

    # --- index and revocation ----------------------------------------------------------

    def _load_json(self, file: str) -> list[dict[str, str]]:
        path = self.directory / file
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigInvalid(f"CA file {path} is unreadable: {exc}") from None
        if not isinstance(data, list):
            raise ConfigInvalid(f"CA file {path} must hold a JSON list")
        return data

    def _record(self, cert: x509.Certificate, role: Role, name: str) -> None:
        issued = self._load_json(self.ISSUED)
        issued.append(
            {
                "serial": f"{cert.serial_number:x}",
                "role": role.value,
                "name": name,
                "not_after": cert.not_valid_after_utc.isoformat(),
                "fingerprint": cert_fingerprint(cert).hex(),
            }
        )
        atomic_write(self.directory / self.ISSUED, json.dumps(issued, indent=1).encode())

    def issued(self) -> list[dict[str, str]]:
        return self._load_json(self.ISSUED)

    def revoke(self, serial: int, reason: str = "unspecified") -> None:
        known = {int(entry["serial"], 16) for entry in self.issued()}
        if serial not in known:
            raise ConfigInvalid(f"serial {serial:x} was not issued by this CA")
        revoked = self._load_json(self.REVOKED)
        if any(int(entry["serial"], 16) == serial for entry in revoked):
            return
        revoked.append(
            {
                "serial": f"{serial:x}",
                "reason": reason,
                "revoked_at": dt.datetime.now(dt.UTC).isoformat(),
            }
        )
        atomic_write(self.directory / self.REVOKED, json.dumps(revoked, indent=1).encode())

    def revoked_serials(self) -> set[int]:
        return {int(entry["serial"], 16) for entry in self._load_json(self.REVOKED)}

    def trust_anchor(self) -> TrustAnchor:
        return TrustAnchor([self.certificate], self.revoked_serials())
