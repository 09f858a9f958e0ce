"""Consent artefacts: build, sign, parse and verify.

A consent artefact (`govbus.v1.ConsentArtefact`) is serialized once and the
consent service signs those exact bytes (`SignedConsent`); with EDS the citizen
has signed the same bytes first. Nothing is canonicalised, so what a provider
verifies is byte for byte what the citizen agreed to.

`verify_signed_consent` is the one place that turns untrusted bytes into a
`ParsedConsent`; it raises `ConsentInvalid` for malformed input, `Certificate*`
for an untrusted signer and `SignatureInvalid` for forged or altered bytes. It
never does I/O and never looks at revocation state or the clock beyond the
certificate check: state is the verifier's business.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from consent.trust import ConsentServiceKey, ms_to_datetime, verify_consent_service_signature
from govbus.crypto.pki import Identity, Role, TrustAnchor, certificate_der, load_certificate
from govbus.errors import (
    ConsentInvalid,
    InvalidIdentifier,
    SignatureInvalid,
)
from govbus.ids import Iin, ServiceId, SubsystemId
from govbus.pb.govbus.v1 import consent_pb2, signature_pb2, usage_pb2

__all__ = [
    "MAX_ARTEFACT_BYTES",
    "ParsedConsent",
    "check_artefact",
    "parse_signed_consent",
    "sign_consent",
    "terms_of",
    "verify_citizen_signature",
    "verify_signed_consent",
]

#: A signed consent larger than this is refused before parsing (two certificates,
#: two signatures and a few dozen services fit easily).
MAX_ARTEFACT_BYTES = 16 * 1024

_MODES = {consent_pb2.CONSENT_MODE_VIEW, consent_pb2.CONSENT_MODE_STORE}
_METHODS = {
    usage_pb2.CONSENT_METHOD_OTP,
    usage_pb2.CONSENT_METHOD_EDS,
    usage_pb2.CONSENT_METHOD_IN_PERSON,
}


@dataclass(frozen=True, slots=True)
class ParsedConsent:
    """A consent whose signature has been verified: the facts a verifier compares."""

    consent_id: str
    subject: str
    grantee: str
    #: service id -> the fields the consent narrows it to (empty = all fields)
    scopes: Mapping[str, tuple[str, ...]]
    purpose_code: str
    mode: int  # consent_pb2.ConsentMode
    not_before_ms: int
    expires_at_ms: int
    method: int  # usage_pb2.ConsentMethod
    issued_at_ms: int
    signer: Identity
    artefact: consent_pb2.ConsentArtefact


def check_artefact(artefact: consent_pb2.ConsentArtefact) -> None:
    """Raise `ConsentInvalid` unless every field an artefact needs is present and valid."""
    if not artefact.id or len(artefact.id) > 64:
        raise ConsentInvalid("consent artefact has no id (or one longer than 64 characters)")
    try:
        Iin(artefact.subject)
        SubsystemId.parse(artefact.grantee)
        for scope in artefact.scopes:
            ServiceId.parse(scope.service)
    except InvalidIdentifier as exc:
        raise ConsentInvalid(f"consent {artefact.id} names an invalid id: {exc.message}") from None
    if not artefact.scopes:
        raise ConsentInvalid(f"consent {artefact.id} covers no service")
    services = [scope.service for scope in artefact.scopes]
    if len(set(services)) != len(services):
        raise ConsentInvalid(f"consent {artefact.id} names a service twice")
    if not artefact.purpose_code:
        raise ConsentInvalid(f"consent {artefact.id} has no purpose code")
    if artefact.mode not in _MODES:
        raise ConsentInvalid(f"consent {artefact.id} has no mode (view or store)")
    if artefact.evidence.method not in _METHODS:
        raise ConsentInvalid(f"consent {artefact.id} does not say how it was given")
    if artefact.expires_at_ms <= artefact.not_before_ms or artefact.not_before_ms <= 0:
        raise ConsentInvalid(f"consent {artefact.id} has an empty or unset validity window")


def sign_consent(
    artefact_bytes: bytes,
    key: ConsentServiceKey,
    *,
    citizen_signature: signature_pb2.Signature | None = None,
    citizen_certificate: bytes = b"",
) -> bytes:
    """The serialized `SignedConsent` for exactly `artefact_bytes`."""
    signed = consent_pb2.SignedConsent(
        artefact=artefact_bytes,
        signature=key.sign(artefact_bytes),
        signer_certificate=key.certificate,
    )
    if citizen_signature is not None:
        signed.citizen_signature.CopyFrom(citizen_signature)
        signed.citizen_certificate = citizen_certificate
    return signed.SerializeToString(deterministic=True)


def parse_signed_consent(raw: bytes) -> consent_pb2.SignedConsent:
    """Parse without verifying (for display); raise `ConsentInvalid` on garbage."""
    if not raw:
        raise ConsentInvalid("no consent artefact given")
    if len(raw) > MAX_ARTEFACT_BYTES:
        raise ConsentInvalid(
            f"consent artefact is {len(raw)} bytes; at most {MAX_ARTEFACT_BYTES} are accepted"
        )
    signed = consent_pb2.SignedConsent()
    try:
        signed.ParseFromString(raw)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
        raise ConsentInvalid("consent artefact is not a valid SignedConsent") from None
    if not signed.artefact or not signed.signature.value or not signed.signer_certificate:
        raise ConsentInvalid("consent artefact is unsigned or incomplete")
    return signed


def terms_of(raw: bytes) -> consent_pb2.ConsentArtefact:
    """The terms inside a signed consent, parsed without verifying (for display, or to
    learn its id); raise `ConsentInvalid` on garbage or a consent without id."""
    artefact = _parse_artefact(parse_signed_consent(raw).artefact)
    if not artefact.id:
        raise ConsentInvalid("consent artefact has no id")
    return artefact


def _parse_artefact(data: bytes) -> consent_pb2.ConsentArtefact:
    artefact = consent_pb2.ConsentArtefact()
    try:
        artefact.ParseFromString(data)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on garbage
        raise ConsentInvalid("signed consent does not hold a valid ConsentArtefact") from None
    return artefact


def verify_signed_consent(
    raw: bytes,
    anchor: TrustAnchor,
    *,
    at: dt.datetime | None = None,
    check_citizen: bool = False,
) -> ParsedConsent:
    """Verify the consent service's signature (and with `check_citizen`, an EDS
    consent's citizen signature) and return the parsed consent.

    `at` is when the signer certificate must be valid (default: now).
    """
    signed = parse_signed_consent(raw)
    at = at or dt.datetime.now(dt.UTC)
    signer = verify_consent_service_signature(
        anchor, signed.signer_certificate, signed.signature, signed.artefact, at=at
    )
    artefact = _parse_artefact(signed.artefact)
    check_artefact(artefact)
    if check_citizen and artefact.evidence.method == usage_pb2.CONSENT_METHOD_EDS:
        if not signed.citizen_signature.value:
            raise SignatureInvalid(f"EDS consent {artefact.id} carries no citizen signature")
        verify_citizen_signature(
            anchor,
            signed.artefact,
            signed.citizen_signature,
            signed.citizen_certificate,
            artefact.subject,
            at=ms_to_datetime(artefact.issued_at_ms),
        )
    return ParsedConsent(
        consent_id=artefact.id,
        subject=artefact.subject,
        grantee=artefact.grantee,
        scopes=MappingProxyType({s.service: tuple(s.fields) for s in artefact.scopes}),
        purpose_code=artefact.purpose_code,
        mode=artefact.mode,
        not_before_ms=artefact.not_before_ms,
        expires_at_ms=artefact.expires_at_ms,
        method=artefact.evidence.method,
        issued_at_ms=artefact.issued_at_ms,
        signer=signer,
        artefact=artefact,
    )


def verify_citizen_signature(
    anchor: TrustAnchor,
    data: bytes,
    signature: signature_pb2.Signature,
    certificate: bytes,
    subject: str,
    *,
    at: dt.datetime,
) -> Identity:
    """Check that the citizen `subject` signed `data` with their own EDS key.

    The certificate (DER or PEM) must chain to the CA with role citizen and name
    the subject's IIN.
    """
    if not certificate:
        raise SignatureInvalid("no citizen certificate given with the EDS signature")
    der = certificate_der(load_certificate(certificate))
    identity = anchor.validate(der, role=Role.CITIZEN, at=at)
    if identity.name != subject:
        raise SignatureInvalid(
            f"the EDS certificate speaks for IIN {_mask(identity.name)}, "
            f"not for the subject {_mask(subject)}"
        )
    identity.verifier().verify(signature, data)
    return identity


def _mask(iin: str) -> str:
    try:
        return Iin(iin).masked()
    except InvalidIdentifier:
        return "(invalid)"
