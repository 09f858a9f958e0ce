"""The consent service's signing key, and how anyone checks what it signed.

Three things carry the consent service's signature: consent artefacts, pages of
the revocation feed and citizen tokens. All are checked the same way: the signer
certificate must chain to the bus CA with role `consent`, be in its validity
window and not revoked, and its key must have made the signature over the exact
bytes. Trust is by role rather than by pinning one certificate, so a key rotation
does not invalidate the consents signed before it (a compromised key is revoked
by serial in the global configuration instead).

Pure functions and a small value class; no I/O except `ConsentServiceKey.load`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from govbus.crypto.keys import KeySigner, Signer, load_private_key
from govbus.crypto.pki import (
    Identity,
    Role,
    TrustAnchor,
    cert_fingerprint,
    certificate_der,
    load_certificate,
)
from govbus.errors import KeyInvalid
from govbus.pb.govbus.v1 import signature_pb2

__all__ = ["ConsentServiceKey", "ms_to_datetime", "verify_consent_service_signature"]


def ms_to_datetime(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


@dataclass(frozen=True, slots=True)
class ConsentServiceKey:
    """The consent service's signer and the DER certificate (role consent) it signs as."""

    signer: Signer
    certificate: bytes
    name: str

    @classmethod
    def load(
        cls, key_path: Path, cert_path: Path, passphrase: bytes, anchor: TrustAnchor
    ) -> ConsentServiceKey:
        key = load_private_key(key_path, passphrase)
        der = certificate_der(load_certificate(cert_path))
        cert_key = load_certificate(der).public_key()
        if cert_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise KeyInvalid(f"key {key_path} does not belong to certificate {cert_path}")
        return cls.of(KeySigner(key, cert_fingerprint(der)), der, anchor)

    @classmethod
    def of(cls, signer: Signer, certificate: bytes, anchor: TrustAnchor) -> ConsentServiceKey:
        """Check that `certificate` is a valid consent certificate naming `signer`'s key."""
        identity = anchor.validate(certificate, role=Role.CONSENT)
        if signer.key_id != identity.fingerprint:
            raise KeyInvalid("the consent service key does not belong to its certificate")
        return cls(signer, certificate_der(load_certificate(certificate)), identity.name)

    def sign(self, data: bytes) -> signature_pb2.Signature:
        return self.signer.sign(data)


def verify_consent_service_signature(
    anchor: TrustAnchor,
    certificate: bytes,
    signature: signature_pb2.Signature,
    data: bytes,
    *,
    at: dt.datetime,
) -> Identity:
    """The signer's identity if the consent service signed `data`; else raise
    `Certificate*` (certificate not trusted, wrong role, expired, revoked) or
    `SignatureInvalid`."""
    identity = anchor.validate(certificate, role=Role.CONSENT, at=at)
    identity.verifier().verify(signature, data)
    return identity
