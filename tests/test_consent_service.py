"""The consent service over real gRPC and TLS: the three ways to confirm, one-time
codes (brute force, reuse, expiry, rate limit, hashed at rest), citizen tokens,
listing and revoking, the signed feed, and bad input that changes nothing."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from consent.artefact import verify_signed_consent
from consent.client import ConsentClient
from consent.feed import verify_feed_page
from consent.service import ConsentSettings
from consent.sms import latest_code, read_outbox
from govbus.crypto.pki import CertificateAuthority, Role, certificate_der, certificate_pem
from govbus.errors import (
    AccessDenied,
    CertificateInvalid,
    FailedPrecondition,
    GovbusError,
    InvalidIdentifier,
    InvalidRequest,
    NotFound,
    Origin,
    OtpInvalid,
    OtpLocked,
    RateLimited,
    SignatureInvalid,
    Unauthenticated,
    UnknownService,
)
from govbus.pb.govbus.v1 import consent_pb2, usage_pb2
from tests.conftest import PASSPHRASE
from tests.consent_world import (
    ALICE,
    BOB,
    CLIENT,
    DAY_MS,
    PURPOSE,
    S_BIRTH,
    S_PERSON,
    RunningService,
    World,
    running_service,
)

PHONE = "+77011234567"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.create(tmp_path)


def scenario(
    world: World,
    tmp_path: Path,
    test: Callable[[RunningService], Awaitable[None]],
    **options: object,
) -> None:
    async def main() -> None:
        async with running_service(world, tmp_path / "svc", **options) as svc:  # type: ignore[arg-type]
            operator = svc.operator_client()
            try:
                await operator.set_phone(ALICE, PHONE)
            finally:
                await operator.close()
            await test(svc)

    asyncio.run(main())


async def ask(
    client: ConsentClient, method: int = usage_pb2.CONSENT_METHOD_OTP, **kw: object
) -> consent_pb2.RequestConsentResponse:
    terms: dict[str, object] = {
        "subject": ALICE,
        "grantee": CLIENT,
        "scopes": [(S_PERSON, ["name"]), (S_BIRTH, [])],
        "purpose_code": PURPOSE,
        "purpose_text": "to register the birth of your child",
        "expires_at_ms": int(time.time() * 1000) + 30 * DAY_MS,
        "method": method,
    }
    terms.update(kw)
    return await client.request_consent(**terms)  # type: ignore[arg-type]


async def expect(error: type[GovbusError], call: Awaitable[object]) -> GovbusError:
    with pytest.raises(error) as caught:
        await call
    return caught.value


# --- OTP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_otp_consent_flow(
    world: World, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    pg = request.getfixturevalue("pg_dsn") if backend == "postgres" else None

    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            asked = await ask(client)
            assert asked.otp_sent_to == "+7******4567"
            assert asked.terms.subject == ALICE and not asked.artefact_to_sign
            message = read_outbox(svc.outbox)[-1]
            assert message.to == PHONE and CLIENT in message.text
            record = await client.confirm_otp(asked.request_id, message.code or "")
            assert record.state == consent_pb2.CONSENT_STATE_ACTIVE
            parsed = verify_signed_consent(record.signed_consent, world.anchor)
            assert parsed.consent_id == asked.consent_id
            assert parsed.scopes == {S_PERSON: ("name",), S_BIRTH: ()}
            evidence = parsed.artefact.evidence
            assert evidence.method == usage_pb2.CONSENT_METHOD_OTP
            assert evidence.phone_masked == "+7******4567" and evidence.otp_challenge_id
            fetched = await client.get(asked.consent_id)
            assert fetched.signed_consent == record.signed_consent
            # the code cannot confirm anything a second time
            await expect(
                FailedPrecondition, client.confirm_otp(asked.request_id, message.code or "")
            )
        finally:
            await client.close()

    scenario(world, tmp_path, test, pg_dsn=pg)


def test_otp_brute_force_is_stopped(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            asked = await ask(client)
            code = read_outbox(svc.outbox)[-1].code or ""
            wrong = [f"{(int(code) + n) % 1_000_000:06d}" for n in range(1, 6)]
            for guess in wrong[:4]:
                error = await expect(OtpInvalid, client.confirm_otp(asked.request_id, guess))
                assert error.origin is Origin.CLIENT
            await expect(OtpLocked, client.confirm_otp(asked.request_id, wrong[4]))
            # locked: the right code no longer works, and nothing was created
            await expect(OtpLocked, client.confirm_otp(asked.request_id, code))
            await expect(NotFound, client.get(asked.consent_id))
            # malformed codes do not reach the store at all
            await expect(OtpInvalid, client.confirm_otp(asked.request_id, "12ab56"))
        finally:
            await client.close()

    scenario(world, tmp_path, test)


def test_login_code_cannot_be_reused(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            started = await client.start_login(ALICE, usage_pb2.CONSENT_METHOD_OTP)
            code = latest_code(svc.outbox, started.challenge_id)
            token = await client.complete_login_otp(started.challenge_id, code)
            assert token.token
            await expect(OtpInvalid, client.complete_login_otp(started.challenge_id, code))
            # a consent code cannot log anyone in, a log-in code cannot confirm a consent
            await ask(client)
            consent_challenge = read_outbox(svc.outbox)[-1]
            await expect(
                NotFound,
                client.complete_login_otp(
                    consent_challenge.reference, consent_challenge.code or ""
                ),
            )
        finally:
            await client.close()

    scenario(world, tmp_path, test)


def test_expired_code_is_refused(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            asked = await ask(client)
            code = read_outbox(svc.outbox)[-1].code or ""
            await expect(OtpInvalid, client.confirm_otp(asked.request_id, code))
        finally:
            await client.close()

    scenario(world, tmp_path, test, settings=ConsentSettings(otp_ttl_ms=0))


def test_code_sends_are_rate_limited(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            await ask(client)
            await client.start_login(ALICE, usage_pb2.CONSENT_METHOD_OTP)
            error = await expect(RateLimited, ask(client))
            assert error.retry_after is not None and error.retry_after > 0
            assert len(read_outbox(svc.outbox)) == 2  # the refused one sent nothing
        finally:
            await client.close()

    scenario(world, tmp_path, test, settings=ConsentSettings(otp_rate_limit=2))


def test_codes_are_stored_hashed(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            for _ in range(3):
                await ask(client)
        finally:
            await client.close()
        codes = [m.code for m in read_outbox(svc.outbox)]
        assert len(codes) == 3 and all(codes)
        rows = await svc.store.raw_rows("consent_challenges")
        stored = b"".join(bytes(r[4]) for r in rows)
        assert len(stored) == 3 * 32  # one HMAC-SHA256 per code
        files = [p for p in (tmp_path / "svc").iterdir() if p.name.startswith("consent.db")]
        on_disk = b"".join(p.read_bytes() for p in files)
        assert on_disk  # the database and its WAL were read
        for code in codes:
            assert code is not None and code.encode() not in on_disk

    scenario(world, tmp_path, test)


# --- EDS ------------------------------------------------------------------------------


def test_eds_consent_flow(world: World, tmp_path: Path) -> None:
    alice = world.citizens[ALICE]
    bob = world.citizens[BOB]

    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            asked = await ask(client, usage_pb2.CONSENT_METHOD_EDS)
            body = asked.artefact_to_sign
            assert body and not asked.otp_sent_to
            wrong_cases: list[tuple[type[GovbusError], consent_pb2.EdsConfirmation]] = [
                # Bob signs Alice's consent
                (
                    SignatureInvalid,
                    consent_pb2.EdsConfirmation(
                        signature=bob.signer().sign(body),
                        certificate=certificate_der(bob.certificate),
                    ),
                ),
                # Alice signs other bytes
                (
                    SignatureInvalid,
                    consent_pb2.EdsConfirmation(
                        signature=alice.signer().sign(body + b"x"),
                        certificate=certificate_der(alice.certificate),
                    ),
                ),
                # an operator's key is not an EDS
                (
                    CertificateInvalid,
                    consent_pb2.EdsConfirmation(
                        signature=world.operator_key.signer().sign(body),
                        certificate=certificate_der(world.operator_key.certificate),
                    ),
                ),
            ]
            for error, eds in wrong_cases:
                await expect(
                    error,
                    client._confirm(
                        consent_pb2.ConfirmConsentRequest(request_id=asked.request_id, eds=eds)
                    ),
                )
            await expect(InvalidRequest, client.confirm_otp(asked.request_id, "123456"))
            record = await client.confirm_eds(
                asked.request_id, alice.signer(), certificate_pem(alice.certificate)
            )
            parsed = verify_signed_consent(record.signed_consent, world.anchor, check_citizen=True)
            signed = consent_pb2.SignedConsent.FromString(record.signed_consent)
            assert signed.artefact == body  # the service signed exactly what the citizen signed
            assert signed.citizen_certificate == certificate_der(alice.certificate)
            assert parsed.method == usage_pb2.CONSENT_METHOD_EDS
        finally:
            await client.close()

    scenario(world, tmp_path, test)


# --- in person ------------------------------------------------------------------------


def test_in_person_needs_an_operator(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        public = svc.client()
        operator = svc.operator_client()
        citizen = svc.operator_client(world.citizens[ALICE])
        try:
            asked = await ask(public, usage_pb2.CONSENT_METHOD_IN_PERSON)
            await expect(
                Unauthenticated, public.confirm_in_person(asked.request_id, "id-card", "045123456")
            )
            await expect(
                AccessDenied, citizen.confirm_in_person(asked.request_id, "id-card", "045123456")
            )
            await expect(
                InvalidRequest, operator.confirm_in_person(asked.request_id, "id card!", "1")
            )
            record = await operator.confirm_in_person(asked.request_id, "id-card", "045 123 456")
            evidence = verify_signed_consent(record.signed_consent, world.anchor).artefact.evidence
            assert evidence.method == usage_pb2.CONSENT_METHOD_IN_PERSON
            assert evidence.operator_id == "operator-001"
            assert evidence.id_document_type == "id-card"
            assert len(evidence.id_document_hash) == 32
            assert b"045123456" not in record.signed_consent
            # the same document gives the same keyed hash (an auditor can match it)
            assert evidence.id_document_hash == svc.service.document_hash("id-card", "045123456")
        finally:
            for c in (public, operator, citizen):
                await c.close()

    scenario(world, tmp_path, test)


def test_operator_port_refuses_certificates_of_another_ca(world: World, tmp_path: Path) -> None:
    impostor = CertificateAuthority.init(tmp_path / "impostor", PASSPHRASE)
    fake = impostor.issue_key(Role.OPERATOR, "operator-001")

    async def test(svc: RunningService) -> None:
        client = svc.operator_client(fake)
        try:
            with pytest.raises(GovbusError):
                await client.set_phone(BOB, PHONE)
        finally:
            await client.close()

    scenario(world, tmp_path, test)


# --- tokens, list, revoke, feed -------------------------------------------------------------


async def confirmed(svc: RunningService, client: ConsentClient, subject: str = ALICE) -> str:
    asked = await ask(client, subject=subject)
    code = read_outbox(svc.outbox)[-1].code or ""
    await client.confirm_otp(asked.request_id, code)
    return asked.consent_id


def test_list_and_revoke_by_the_citizen(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        operator = svc.operator_client()
        try:
            await operator.set_phone(BOB, "+77017654321")
            first = await confirmed(svc, client)
            second = await confirmed(svc, client)
            bobs = await confirmed(svc, client, BOB)
            await expect(Unauthenticated, client.list())
            token = await client.login_eds(
                ALICE,
                world.citizens[ALICE].signer(),
                certificate_der(world.citizens[ALICE].certificate),
            )
            listed = await client.list(token=token)
            assert [
                verify_signed_consent(r.signed_consent, world.anchor).consent_id for r in listed
            ] == [first, second]
            await expect(AccessDenied, client.list(token=token, subject=BOB))
            await expect(AccessDenied, client.revoke(bobs, token=token))
            await expect(Unauthenticated, client.revoke(first))
            revoked = await client.revoke(first, token=token, reason="changed my mind")
            assert revoked.state == consent_pb2.CONSENT_STATE_REVOKED
            assert revoked.revocation_seq == 1 and revoked.revoked_by.startswith("citizen")
            # the operator at the counter revokes for Bob, who is present
            by_operator = await operator.revoke(bobs)
            assert by_operator.revocation_seq == 2 and "operator-001" in by_operator.revoked_by
            assert len(await operator.list(subject=BOB)) == 1
            # the feed, signed and answering this request only
            nonce = os.urandom(16)
            page = await client.feed(0, nonce)
            verified = verify_feed_page(
                page.SerializeToString(),
                world.anchor,
                after_seq=0,
                nonce=nonce,
                now_ms=int(time.time() * 1000),
            )
            assert [(e.seq, e.consent_id) for e in verified.entries] == [(1, first), (2, bobs)]
            await expect(InvalidRequest, client.feed(0, b""))
            state = {r.state for r in await client.list(token=token)}
            assert state == {consent_pb2.CONSENT_STATE_ACTIVE, consent_pb2.CONSENT_STATE_REVOKED}
        finally:
            await client.close()
            await operator.close()

    scenario(world, tmp_path, test)


def test_forged_or_expired_tokens_are_refused(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            started = await client.start_login(ALICE, usage_pb2.CONSENT_METHOD_OTP)
            token = await client.complete_login_otp(
                started.challenge_id, latest_code(svc.outbox, started.challenge_id)
            )
            await expect(Unauthenticated, client.list(token=token))  # lived 0 ms
            other = world.ca.issue_key(Role.CITIZEN, ALICE)  # not the consent service's key
            forged = usage_pb2.SignedCitizenToken(
                token=token.token,
                signature=other.signer().sign(token.token),
                signer_certificate=certificate_der(other.certificate),
            )
            await expect(CertificateInvalid, client.list(token=forged))
        finally:
            await client.close()

    scenario(world, tmp_path, test, settings=ConsentSettings(token_ttl_ms=0))


# --- bad input changes nothing -----------------------------------------------------------


def test_bad_requests_change_nothing(world: World, tmp_path: Path) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        now = int(time.time() * 1000)
        try:
            cases: list[tuple[type[GovbusError], dict[str, object]]] = [
                (InvalidIdentifier, {"subject": "123456789012"}),
                (InvalidIdentifier, {"grantee": "KZ/GOV/nope/tson"}),
                (InvalidIdentifier, {"scopes": [("not-a-service", [])]}),
                (InvalidRequest, {"scopes": []}),
                (InvalidRequest, {"scopes": [(S_PERSON, []), (S_PERSON, [])]}),
                (InvalidRequest, {"scopes": [(S_PERSON, ["bad field!"])]}),
                (InvalidRequest, {"purpose_code": ""}),
                (InvalidRequest, {"purpose_text": " "}),
                (InvalidRequest, {"expires_at_ms": now - 1}),
                (InvalidRequest, {"expires_at_ms": now + 6 * 365 * DAY_MS}),
                (InvalidRequest, {"not_before_ms": now - DAY_MS}),
                (InvalidRequest, {"method": usage_pb2.CONSENT_METHOD_UNSPECIFIED}),
                (InvalidRequest, {"mode": consent_pb2.CONSENT_MODE_UNSPECIFIED}),
                (FailedPrecondition, {"subject": BOB}),  # no phone for Bob
            ]
            for error, change in cases:
                await expect(error, ask(client, **change))
            await expect(NotFound, client.confirm_otp("no-such-request", "123456"))
            await expect(NotFound, client.get("no-such-consent"))
            await expect(Unauthenticated, client.set_phone(ALICE, "+77000000000"))
            operator = svc.operator_client()
            try:
                await expect(InvalidRequest, operator.set_phone(ALICE, "8 701 123"))
            finally:
                await operator.close()
        finally:
            await client.close()
        assert read_outbox(svc.outbox) == []
        for table in ("consent_requests", "consent_challenges", "consent_consents", "consent_feed"):
            assert await svc.store.raw_rows(table) == []

    scenario(world, tmp_path, test)


def test_requests_are_checked_against_the_global_configuration(
    world: World, tmp_path: Path
) -> None:
    async def test(svc: RunningService) -> None:
        client = svc.client()
        try:
            await expect(
                UnknownService, ask(client, scopes=[(S_PERSON.replace("person", "x"), [])])
            )
            await expect(InvalidRequest, ask(client, scopes=[(S_PERSON, ["salary"])]))
            await expect(InvalidRequest, ask(client, scopes=[(S_BIRTH, ["name"])]))
            await expect(InvalidRequest, ask(client, grantee=CLIENT.replace("tson", "unknown")))
            assert (await ask(client, scopes=[(S_PERSON, ["name", "address"])])).consent_id
        finally:
            await client.close()

    scenario(world, tmp_path, test, globalconf=world.view())
