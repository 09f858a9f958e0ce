"""Consent artefacts: signing and verification, forged and altered ones refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from consent.artefact import (
    MAX_ARTEFACT_BYTES,
    sign_consent,
    verify_citizen_signature,
    verify_signed_consent,
)
from consent.trust import ConsentServiceKey, ms_to_datetime
from govbus.crypto.pki import CertificateAuthority, Role, certificate_der
from govbus.errors import (
    CertificateInvalid,
    CertificateRevoked,
    ConsentInvalid,
    KeyInvalid,
    SignatureInvalid,
)
from govbus.pb.govbus.v1 import consent_pb2, usage_pb2
from tests.conftest import PASSPHRASE
from tests.consent_world import ALICE, BOB, CLIENT, S_PERSON, World


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.create(tmp_path)


def test_signed_artefact_verifies_and_parses(world: World) -> None:
    raw = world.signed(world.artefact(fields=("name",)))
    parsed = verify_signed_consent(raw, world.anchor)
    assert parsed.consent_id == "c-0001"
    assert parsed.subject == ALICE
    assert parsed.grantee == CLIENT
    assert parsed.scopes[S_PERSON] == ("name",)
    assert parsed.signer.role is Role.CONSENT


def test_every_single_byte_flip_is_refused(world: World) -> None:
    raw = world.signed()
    for position in range(len(raw)):
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        with pytest.raises((SignatureInvalid, ConsentInvalid, CertificateInvalid)):
            verify_signed_consent(bytes(tampered), world.anchor)


def test_altered_artefact_with_the_original_signature_is_refused(world: World) -> None:
    signed = consent_pb2.SignedConsent.FromString(world.signed())
    artefact = consent_pb2.ConsentArtefact.FromString(signed.artefact)
    artefact.subject = BOB  # the same consent, re-pointed at another person
    signed.artefact = artefact.SerializeToString()
    with pytest.raises(SignatureInvalid):
        verify_signed_consent(signed.SerializeToString(), world.anchor)


def test_forged_by_another_ca_is_refused(world: World, tmp_path: Path) -> None:
    impostor = CertificateAuthority.init(tmp_path / "impostor", PASSPHRASE)
    forged = world.signed(key=impostor.issue_key(Role.CONSENT, "consent-service"))
    with pytest.raises(CertificateInvalid, match=r"not issued by a trusted CA|does not verify"):
        verify_signed_consent(forged, world.anchor)


@pytest.mark.parametrize("role", [Role.SIGNING, Role.CITIZEN, Role.OPERATOR, Role.REGISTRY])
def test_signer_with_another_role_is_refused(world: World, role: Role) -> None:
    other = world.ca.issue_key(role, ALICE if role is Role.CITIZEN else "someone")
    with pytest.raises(CertificateInvalid, match="role"):
        verify_signed_consent(world.signed(key=other), world.anchor)
    # and a service key cannot even be built on such a certificate
    with pytest.raises(CertificateInvalid):
        ConsentServiceKey.of(other.signer(), certificate_der(other.certificate), world.anchor)


def test_signature_swapped_with_another_certificate_is_refused(world: World) -> None:
    signed = consent_pb2.SignedConsent.FromString(world.signed())
    other = world.ca.issue_key(Role.CONSENT, "consent-service-2")
    signed.signer_certificate = certificate_der(other.certificate)
    with pytest.raises(SignatureInvalid):
        verify_signed_consent(signed.SerializeToString(), world.anchor)


def test_revoked_consent_service_certificate_is_refused(world: World) -> None:
    raw = world.signed()
    anchor = world.anchor.with_revoked([world.consent_key.certificate.serial_number])
    with pytest.raises(CertificateRevoked):
        verify_signed_consent(raw, anchor)


def test_key_must_belong_to_its_certificate(world: World) -> None:
    other = world.ca.issue_key(Role.CONSENT, "consent-service-2")
    with pytest.raises(KeyInvalid):
        ConsentServiceKey.of(
            world.consent_key.signer(), certificate_der(other.certificate), world.anchor
        )


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"not a protobuf at all", b"\x0a\x05hello", b"x" * (MAX_ARTEFACT_BYTES + 1)],
)
def test_garbage_is_consent_invalid(world: World, garbage: bytes) -> None:
    with pytest.raises(ConsentInvalid):
        verify_signed_consent(garbage, world.anchor)


def test_artefact_missing_fields_is_invalid_even_when_signed(world: World) -> None:
    for mutate in (
        lambda a: a.ClearField("scopes"),
        lambda a: setattr(a, "subject", "123"),
        lambda a: setattr(a, "grantee", "nobody"),
        lambda a: setattr(a, "purpose_code", ""),
        lambda a: setattr(a, "mode", consent_pb2.CONSENT_MODE_UNSPECIFIED),
        lambda a: setattr(a, "expires_at_ms", a.not_before_ms),
        lambda a: a.evidence.ClearField("method"),
    ):
        artefact = world.artefact()
        mutate(artefact)
        with pytest.raises(ConsentInvalid):
            verify_signed_consent(world.signed(artefact), world.anchor)


def test_eds_citizen_signature_is_checked_when_asked(world: World) -> None:
    artefact = world.artefact(method=usage_pb2.CONSENT_METHOD_EDS)
    body = artefact.SerializeToString(deterministic=True)
    alice = world.citizens[ALICE]
    good = sign_consent(
        body,
        world.service_key,
        citizen_signature=alice.signer().sign(body),
        citizen_certificate=certificate_der(alice.certificate),
    )
    assert verify_signed_consent(good, world.anchor, check_citizen=True).subject == ALICE
    # Bob's key cannot sign Alice's consent
    bob = world.citizens[BOB]
    wrong_person = sign_consent(
        body,
        world.service_key,
        citizen_signature=bob.signer().sign(body),
        citizen_certificate=certificate_der(bob.certificate),
    )
    with pytest.raises(SignatureInvalid, match="speaks for"):
        verify_signed_consent(wrong_person, world.anchor, check_citizen=True)
    # an EDS consent without the citizen's signature
    with pytest.raises(SignatureInvalid, match="no citizen signature"):
        verify_signed_consent(world.signed(artefact), world.anchor, check_citizen=True)
    # an operator certificate named like the IIN is not an EDS
    fake = world.ca.issue_key(Role.OPERATOR, ALICE)
    with pytest.raises(CertificateInvalid, match="role"):
        verify_citizen_signature(
            world.anchor,
            body,
            fake.signer().sign(body),
            certificate_der(fake.certificate),
            ALICE,
            at=ms_to_datetime(world.now_ms),
        )
