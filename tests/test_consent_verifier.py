"""The provider's consent check: the full decision matrix, as pure unit tests.

Every case gets its own error code and a decision carrying what the audit record
needs (consent id or legal basis, law reference, hidden-until, justification).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from consent.verifier import ConsentVerifier, ExchangeFacts, RevocationState
from govbus.crypto.pki import CertificateAuthority, Role
from govbus.errors import (
    CertificateInvalid,
    CertificateRevoked,
    ConsentExpired,
    ConsentInvalid,
    ConsentNotYetValid,
    ConsentRequired,
    ConsentRevoked,
    ConsentScope,
    ConsentStatusStale,
    GovbusError,
    InvalidRequest,
    LegalBasisInvalid,
    SignatureInvalid,
    UnknownService,
)
from govbus.globalconf import GlobalConfView
from govbus.pb.govbus.v1 import audit_pb2, consent_pb2
from tests.conftest import PASSPHRASE
from tests.consent_world import (
    ALICE,
    BOB,
    CLIENT,
    DAY_MS,
    OTHER_CLIENT,
    PURPOSE,
    S_BIRTH,
    S_CASES,
    S_PERSON,
    S_PUBLIC,
    World,
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.create(tmp_path)


@pytest.fixture
def view(world: World) -> GlobalConfView:
    return world.view()


def fresh(world: World, *revoked: str) -> RevocationState:
    """A feed snapshot read one second ago."""
    return RevocationState(frozenset(revoked), len(revoked), world.now_ms - 1000)


def facts(world: World, raw: bytes = b"", **changes: object) -> ExchangeFacts:
    base = ExchangeFacts(
        client=CLIENT,
        service=S_PERSON,
        method="/kz.gov.gbdfl.v1.PersonRegistry/Get",
        subject=ALICE,
        purpose=PURPOSE,
        consent_id="",
        consent_artefact=raw or world.signed(),
        now_ms=world.now_ms,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def refused(
    verifier: ConsentVerifier,
    view: GlobalConfView,
    request: ExchangeFacts,
    state: RevocationState,
    error: type[GovbusError],
) -> str:
    decision = verifier.decide(view, request, state)
    assert not decision.allowed
    assert isinstance(decision.error, error), decision.error
    assert decision.justification == audit_pb2.JUSTIFICATION_NONE
    assert decision.reason
    with pytest.raises(error):
        verifier.check(view, request, state)
    return decision.consent_id


def test_valid_consent_is_allowed_with_its_id(world: World, view: GlobalConfView) -> None:
    decision = ConsentVerifier().check(view, facts(world), fresh(world))
    assert decision.allowed
    assert decision.justification == audit_pb2.JUSTIFICATION_CONSENT
    assert decision.consent_id == "c-0001"
    assert decision.mode == consent_pb2.CONSENT_MODE_VIEW
    assert decision.error is None and decision.error_code == ""


def test_fields_of_the_consent_are_in_the_decision(world: World, view: GlobalConfView) -> None:
    raw = world.signed(world.artefact(services=[S_PERSON], fields=["name", "birth_date"]))
    decision = ConsentVerifier().check(view, facts(world, raw), fresh(world))
    assert decision.fields == ("name", "birth_date")


def test_expired(world: World, view: GlobalConfView) -> None:
    raw = world.signed(world.artefact(expires_at_ms=world.now_ms - 1))
    cid = refused(ConsentVerifier(), view, facts(world, raw), fresh(world), ConsentExpired)
    assert cid == "c-0001"  # the refusal is logged with the consent it cited


def test_expires_exactly_now(world: World, view: GlobalConfView) -> None:
    raw = world.signed(world.artefact(expires_at_ms=world.now_ms))
    refused(ConsentVerifier(), view, facts(world, raw), fresh(world), ConsentExpired)


def test_not_yet_valid(world: World, view: GlobalConfView) -> None:
    raw = world.signed(world.artefact(not_before_ms=world.now_ms + 60_000))
    refused(ConsentVerifier(), view, facts(world, raw), fresh(world), ConsentNotYetValid)


def test_revoked_only_once_the_feed_says_so(world: World, view: GlobalConfView) -> None:
    verifier = ConsentVerifier()
    request = facts(world)
    before = fresh(world)
    assert verifier.check(view, request, before).allowed  # the feed has not brought it yet
    after = fresh(world, "c-0001")
    refused(verifier, view, request, after, ConsentRevoked)
    # other consents are unaffected by this revocation
    other = world.signed(world.artefact(consent_id="c-0002"))
    assert verifier.check(view, facts(world, other), after).allowed


def test_wrong_subject(world: World, view: GlobalConfView) -> None:
    refused(ConsentVerifier(), view, facts(world, subject=BOB), fresh(world), ConsentScope)


def test_artefact_for_another_iin_replayed(world: World, view: GlobalConfView) -> None:
    bobs = world.signed(world.artefact(consent_id="c-bob", subject=BOB))
    # presented for a request about Alice, with Alice's consent id in the header
    request = facts(world, bobs, subject=ALICE)
    assert refused(ConsentVerifier(), view, request, fresh(world), ConsentScope) == "c-bob"
    with_alices_id = facts(world, bobs, subject=ALICE, consent_id="c-0001")
    refused(ConsentVerifier(), view, with_alices_id, fresh(world), ConsentInvalid)


def test_wrong_grantee(world: World, view: GlobalConfView) -> None:
    refused(ConsentVerifier(), view, facts(world, client=OTHER_CLIENT), fresh(world), ConsentScope)


def test_service_out_of_scope(world: World, view: GlobalConfView) -> None:
    raw = world.signed(world.artefact(services=[S_BIRTH]))
    refused(ConsentVerifier(), view, facts(world, raw), fresh(world), ConsentScope)


def test_purpose_out_of_scope(world: World, view: GlobalConfView) -> None:
    request = facts(world, purpose="marketing")
    refused(ConsentVerifier(), view, request, fresh(world), ConsentScope)


def test_no_subject_in_the_request(world: World, view: GlobalConfView) -> None:
    refused(ConsentVerifier(), view, facts(world, subject=""), fresh(world), ConsentScope)


def test_forged_signature(world: World, view: GlobalConfView, tmp_path: Path) -> None:
    impostor = CertificateAuthority.init(tmp_path / "impostor", PASSPHRASE)
    forged = world.signed(key=impostor.issue_key(Role.CONSENT, "consent-service"))
    refused(ConsentVerifier(), view, facts(world, forged), fresh(world), CertificateInvalid)
    # a valid key of the wrong role
    signer = world.ca.issue_key(Role.SIGNING, CLIENT)
    refused(
        ConsentVerifier(),
        view,
        facts(world, world.signed(key=signer)),
        fresh(world),
        CertificateInvalid,
    )


def test_altered_artefact(world: World, view: GlobalConfView) -> None:
    signed = consent_pb2.SignedConsent.FromString(world.signed())
    artefact = consent_pb2.ConsentArtefact.FromString(signed.artefact)
    artefact.expires_at_ms += 365 * DAY_MS  # stretch the consent's life
    signed.artefact = artefact.SerializeToString()
    verifier = ConsentVerifier()
    assert verifier.check(view, facts(world), fresh(world)).allowed  # warm the cache
    refused(
        verifier, view, facts(world, signed.SerializeToString()), fresh(world), SignatureInvalid
    )


def test_altered_signature_bytes(world: World, view: GlobalConfView) -> None:
    signed = consent_pb2.SignedConsent.FromString(world.signed())
    value = bytearray(signed.signature.value)
    value[10] ^= 0xFF
    signed.signature.value = bytes(value)
    raw = signed.SerializeToString()
    refused(ConsentVerifier(), view, facts(world, raw), fresh(world), SignatureInvalid)


def test_garbage_artefact(world: World, view: GlobalConfView) -> None:
    refused(
        ConsentVerifier(), view, facts(world, b"\xff\xfe garbage"), fresh(world), ConsentInvalid
    )


def test_missing_consent_where_required(world: World, view: GlobalConfView) -> None:
    verifier = ConsentVerifier()
    none = replace(facts(world), consent_artefact=b"")
    refused(verifier, view, none, fresh(world), ConsentRequired)
    id_only = replace(none, consent_id="c-0001")
    assert refused(verifier, view, id_only, fresh(world), ConsentRequired) == "c-0001"


def test_service_without_personal_data_needs_nothing(world: World, view: GlobalConfView) -> None:
    request = replace(facts(world), service=S_PUBLIC, consent_artefact=b"", subject="")
    decision = ConsentVerifier().check(view, request, RevocationState())
    assert decision.allowed
    assert decision.justification == audit_pb2.JUSTIFICATION_NOT_PERSONAL


def test_unknown_service(world: World, view: GlobalConfView) -> None:
    request = facts(world, service=S_PERSON.replace("person", "nothing"))
    refused(ConsentVerifier(), view, request, fresh(world), UnknownService)


# --- legal bases --------------------------------------------------------------------


def legal(world: World, basis: str, **changes: object) -> ExchangeFacts:
    base = replace(facts(world), service=S_CASES, consent_artefact=b"", legal_basis_id=basis)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_legal_basis_valid(world: World, view: GlobalConfView) -> None:
    # a stale or never-read feed does not matter: the basis comes from the configuration
    decision = ConsentVerifier().check(view, legal(world, "lb-valid"), RevocationState())
    assert decision.allowed
    assert decision.justification == audit_pb2.JUSTIFICATION_LEGAL_BASIS
    assert decision.legal_basis_id == "lb-valid"
    assert decision.law_reference == "Criminal Procedure Code art. 199"
    assert decision.hidden_until_ms == world.now_ms + 30 * DAY_MS
    assert decision.consent_id == ""


def test_legal_basis_expired(world: World, view: GlobalConfView) -> None:
    v = ConsentVerifier()
    refused(v, view, legal(world, "lb-expired"), fresh(world), LegalBasisInvalid)


def test_legal_basis_not_yet_valid(world: World, view: GlobalConfView) -> None:
    v = ConsentVerifier()
    refused(v, view, legal(world, "lb-future"), fresh(world), LegalBasisInvalid)


def test_legal_basis_for_another_consumer(world: World, view: GlobalConfView) -> None:
    v = ConsentVerifier()
    refused(v, view, legal(world, "lb-other"), fresh(world), LegalBasisInvalid)
    # and the other consumer cannot borrow ours either
    request = legal(world, "lb-valid", client=OTHER_CLIENT)
    decision = v.decide(view, request, fresh(world))
    assert isinstance(decision.error, LegalBasisInvalid)
    assert decision.legal_basis_id == "lb-valid"  # logged with the basis it cited


def test_refusal_citing_a_hidden_legal_basis_is_hidden_too(
    world: World, view: GlobalConfView
) -> None:
    # Regression: a refused attempt that cites a hidden basis was shown to the citizen,
    # revealing that the hidden basis exists before its date.
    request = legal(world, "lb-valid", client=OTHER_CLIENT)
    decision = ConsentVerifier().decide(view, request, fresh(world))
    assert not decision.allowed
    assert decision.hidden_until_ms == world.now_ms + 30 * DAY_MS


def test_legal_basis_for_another_service(world: World, view: GlobalConfView) -> None:
    # lb-person is registered for S_PERSON, cited here for S_CASES
    v = ConsentVerifier()
    refused(v, view, legal(world, "lb-person"), fresh(world), LegalBasisInvalid)


def test_legal_basis_unknown(world: World, view: GlobalConfView) -> None:
    v = ConsentVerifier()
    refused(v, view, legal(world, "lb-none"), fresh(world), LegalBasisInvalid)


def test_legal_basis_on_a_consent_only_service(world: World, view: GlobalConfView) -> None:
    request = legal(world, "lb-person", service=S_PERSON)
    refused(ConsentVerifier(), view, request, fresh(world), LegalBasisInvalid)


def test_consent_and_legal_basis_together_is_ambiguous(world: World, view: GlobalConfView) -> None:
    request = replace(facts(world), service=S_CASES, legal_basis_id="lb-valid")
    refused(ConsentVerifier(), view, request, fresh(world), InvalidRequest)


def test_consent_accepted_where_legal_basis_is_also_allowed(
    world: World, view: GlobalConfView
) -> None:
    decision = ConsentVerifier().check(view, facts(world, service=S_CASES), fresh(world))
    assert decision.justification == audit_pb2.JUSTIFICATION_CONSENT


# --- feed staleness ------------------------------------------------------------------


def test_stale_feed_fails_closed_by_default(world: World, view: GlobalConfView) -> None:
    verifier = ConsentVerifier(staleness_ms=5000)
    at_bound = RevocationState(frozenset(), 0, world.now_ms - 5000)
    assert verifier.check(view, facts(world), at_bound).allowed
    stale = RevocationState(frozenset(), 0, world.now_ms - 5001)
    decision = verifier.decide(view, facts(world), stale)
    assert isinstance(decision.error, ConsentStatusStale)
    assert decision.stale_feed and decision.feed_age_ms == 5001
    assert decision.consent_id == "c-0001"
    assert decision.error.retryable
    never = RevocationState()
    assert isinstance(verifier.decide(view, facts(world), never).error, ConsentStatusStale)


def test_stale_feed_fails_open_where_the_service_says_so(
    world: World, view: GlobalConfView
) -> None:
    stale = RevocationState(frozenset(), 0, world.now_ms - 60_000)
    decision = ConsentVerifier().check(view, facts(world, service=S_BIRTH), stale)
    assert decision.allowed
    assert decision.justification == audit_pb2.JUSTIFICATION_STALE_FEED_OPEN
    assert decision.stale_feed and decision.consent_id == "c-0001"
    assert "fails open" in decision.reason
    # what the stale feed did show is still enforced
    revoked = RevocationState(frozenset({"c-0001"}), 1, world.now_ms - 60_000)
    refused(ConsentVerifier(), view, facts(world, service=S_BIRTH), revoked, ConsentRevoked)


def test_staleness_bound_is_configurable(world: World, view: GlobalConfView) -> None:
    state = RevocationState(frozenset(), 0, world.now_ms - 20_000)
    assert ConsentVerifier(staleness_ms=30_000).check(view, facts(world), state).allowed
    refused(ConsentVerifier(staleness_ms=10_000), view, facts(world), state, ConsentStatusStale)
    with pytest.raises(InvalidRequest):
        ConsentVerifier(staleness_ms=0)


# --- the cache ------------------------------------------------------------------------


def test_cache_skips_only_the_signature(world: World, view: GlobalConfView) -> None:
    verifier = ConsentVerifier()
    raw = world.signed(world.artefact(expires_at_ms=world.now_ms + 10_000))
    assert verifier.check(view, facts(world, raw), fresh(world)).allowed
    assert (verifier.hits, verifier.misses) == (0, 1)
    assert verifier.check(view, facts(world, raw), fresh(world)).allowed
    assert (verifier.hits, verifier.misses) == (1, 1)
    # time, revocation and scope are evaluated again on a hit
    later = replace(facts(world, raw), now_ms=world.now_ms + 10_000)
    later_state = RevocationState(frozenset(), 0, world.now_ms + 9_000)
    refused(verifier, view, later, later_state, ConsentExpired)
    refused(verifier, view, facts(world, raw), fresh(world, "c-0001"), ConsentRevoked)
    refused(verifier, view, facts(world, raw, subject=BOB), fresh(world), ConsentScope)
    assert verifier.misses == 1


def test_cache_honours_a_newly_revoked_signer_certificate(world: World) -> None:
    verifier = ConsentVerifier()
    view = world.view()
    assert verifier.check(view, facts(world), fresh(world)).allowed
    serial = world.consent_key.certificate.serial_number
    revoked_view = world.view(world.conf(version=2, revoked=[serial]))
    refused(verifier, revoked_view, facts(world), fresh(world), CertificateRevoked)


def test_cache_is_dropped_when_the_trusted_cas_change(world: World, tmp_path: Path) -> None:
    verifier = ConsentVerifier()
    assert verifier.check(world.view(), facts(world), fresh(world)).allowed
    other = World.create(tmp_path / "other-bus")
    other.now_ms = world.now_ms
    # the same artefact bytes under another bus's trust anchor are not trusted from cache
    refused(verifier, other.view(), facts(world), fresh(world), CertificateInvalid)


def test_cache_is_bounded(world: World, view: GlobalConfView) -> None:
    verifier = ConsentVerifier(cache_size=3)
    for n in range(6):
        raw = world.signed(world.artefact(consent_id=f"c-{n}"))
        assert verifier.check(view, facts(world, raw), fresh(world)).allowed
    assert len(verifier._cache) == 3
