"""The revocation feed and its follower, against a consent service over real TLS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from consent.client import ConsentClient, consent_channel
from consent.feed import RevocationFeedFollower, grpc_feed_source, verify_feed_page
from consent.sms import read_outbox
from consent.verifier import ConsentVerifier, ExchangeFacts
from govbus.crypto.pki import Role, certificate_der
from govbus.errors import (
    CertificateInvalid,
    ConsentInvalid,
    ConsentRevoked,
    ConsentStatusStale,
    ServiceUnavailable,
    SignatureInvalid,
)
from govbus.pb.govbus.v1 import audit_pb2, consent_pb2, usage_pb2
from tests.consent_world import (
    ALICE,
    CLIENT,
    DAY_MS,
    PURPOSE,
    S_BIRTH,
    S_PERSON,
    RunningService,
    World,
    running_service,
    until,
)

FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.create(tmp_path)


async def give_consents(svc: RunningService, client: ConsentClient, count: int) -> list[bytes]:
    """`count` confirmed consents of Alice's, as signed artefacts."""
    operator = svc.operator_client()
    try:
        await operator.set_phone(ALICE, "+77011234567")
    finally:
        await operator.close()
    signed = []
    for _ in range(count):
        asked = await client.request_consent(
            subject=ALICE,
            grantee=CLIENT,
            scopes=[(S_PERSON, []), (S_BIRTH, [])],
            purpose_code=PURPOSE,
            purpose_text="birth registration",
            expires_at_ms=int(time.time() * 1000) + DAY_MS,
            method=usage_pb2.CONSENT_METHOD_OTP,
        )
        record = await client.confirm_otp(asked.request_id, read_outbox(svc.outbox)[-1].code or "")
        signed.append(record.signed_consent)
    return signed


def consent_id(raw: bytes) -> str:
    artefact = consent_pb2.ConsentArtefact.FromString(
        consent_pb2.SignedConsent.FromString(raw).artefact
    )
    return artefact.id


def exchange(raw: bytes, service: str = S_PERSON, now_ms: int = 0) -> ExchangeFacts:
    return ExchangeFacts(
        client=CLIENT,
        service=service,
        subject=ALICE,
        purpose=PURPOSE,
        consent_artefact=raw,
        now_ms=now_ms or int(time.time() * 1000),
    )


def test_follower_pages_through_the_feed_and_enforces_revocations(
    world: World, tmp_path: Path
) -> None:
    async def main() -> None:
        async with running_service(world, tmp_path / "svc") as svc:
            client = svc.client()
            channel = consent_channel(svc.address, world.ca_pem)
            follower = RevocationFeedFollower(
                grpc_feed_source(channel, limit=2), lambda: world.anchor, interval=0.05
            )
            view = world.view()
            verifier = ConsentVerifier()
            try:
                artefacts = await give_consents(svc, client, 5)
                state = await follower.poll_once()
                assert state.seq == 0 and state.revoked == frozenset()
                assert all(verifier.check(view, exchange(a), state).allowed for a in artefacts)
                token = await client.login_eds(
                    ALICE,
                    world.citizens[ALICE].signer(),
                    certificate_der(world.citizens[ALICE].certificate),
                )
                for raw in artefacts[:4]:
                    await client.revoke(consent_id(raw), token=token)
                polls_before = follower.polls
                state = await follower.poll_once()  # 4 entries, pages of 2: several pages
                assert follower.polls == polls_before + 1
                assert state.seq == 4 and len(state.revoked) == 4
                for raw in artefacts[:4]:
                    decision = verifier.decide(view, exchange(raw), state)
                    assert isinstance(decision.error, ConsentRevoked)
                assert verifier.check(view, exchange(artefacts[4]), state).allowed
                # the running follower picks up the next revocation by itself
                follower.start()
                await client.revoke(consent_id(artefacts[4]), token=token)
                await until(lambda: follower.state.seq >= 5, "the fifth revocation")
                assert isinstance(
                    verifier.decide(view, exchange(artefacts[4]), follower.state).error,
                    ConsentRevoked,
                )
            finally:
                await follower.stop()
                await channel.close()
                await client.close()

    asyncio.run(main())


def test_tampered_replayed_or_foreign_pages_are_refused(world: World, tmp_path: Path) -> None:
    async def main() -> None:
        async with running_service(world, tmp_path / "svc") as svc:
            client = svc.client()
            channel = consent_channel(svc.address, world.ca_pem)
            fetch = grpc_feed_source(channel)
            try:
                artefacts = await give_consents(svc, client, 1)
                operator = svc.operator_client()
                await operator.revoke(consent_id(artefacts[0]))
                await operator.close()

                async def tampered(after: int, nonce: bytes) -> bytes:
                    page = bytearray(await fetch(after, nonce))
                    page[len(page) // 3] ^= 0x01
                    return bytes(page)

                recorded: list[bytes] = []

                async def replaying(after: int, nonce: bytes) -> bytes:
                    if not recorded:
                        recorded.append(await fetch(after, b"0123456789abcdef"))
                    return recorded[0]  # an old page, answering another request

                for source, error in (
                    (tampered, (SignatureInvalid, ConsentInvalid, CertificateInvalid)),
                    (replaying, ConsentInvalid),
                ):
                    follower = RevocationFeedFollower(source, lambda: world.anchor)
                    with pytest.raises(error):
                        await follower.poll_once()
                    assert follower.state.seq == 0 and follower.state.updated_at_ms == 0
                    assert follower.failures == 1 and follower.last_error
                # a page signed by anyone but a consent-role key
                stranger = world.ca.issue_key(Role.SIGNING, CLIENT)
                page = consent_pb2.SignedRevocationFeedPage.FromString(
                    await fetch(0, b"0123456789abcdef")
                )
                page.signature.CopyFrom(stranger.signer().sign(page.page))
                page.signer_certificate = certificate_der(stranger.certificate)
                with pytest.raises(CertificateInvalid):
                    verify_feed_page(
                        page.SerializeToString(),
                        world.anchor,
                        after_seq=0,
                        nonce=b"0123456789abcdef",
                        now_ms=int(time.time() * 1000),
                    )
                # and the honest follower still gets it right
                honest = RevocationFeedFollower(fetch, lambda: world.anchor)
                assert (await honest.poll_once()).revoked == {consent_id(artefacts[0])}
            finally:
                await channel.close()
                await client.close()

    asyncio.run(main())


def test_follower_survives_the_service_going_away(world: World, tmp_path: Path) -> None:
    """Stopped service: the follower keeps its state, which ages; the verifier then applies
    each service's stale-feed mode — and nothing waits on the consent service."""

    async def main() -> None:
        view = world.view()
        verifier = ConsentVerifier(staleness_ms=300)
        async with running_service(world, tmp_path / "svc") as svc:
            client = svc.client()
            try:
                artefacts = await give_consents(svc, client, 2)
                operator = svc.operator_client()
                await operator.revoke(consent_id(artefacts[0]))
                await operator.close()
            finally:
                await client.close()
            channel = consent_channel(svc.address, world.ca_pem, options=FAST_RECONNECT)
            follower = RevocationFeedFollower(
                grpc_feed_source(channel, timeout=0.5), lambda: world.anchor, interval=0.05
            )
            await follower.poll_once()
        # the service is gone now
        try:
            follower.start()
            await until(lambda: follower.failures >= 2, "two failed polls")
            assert follower.state.seq == 1
            assert follower.last_error and "SERVICE_UNAVAILABLE" in follower.last_error
            with pytest.raises(ServiceUnavailable):
                await follower.poll_once()
            await until(lambda: (follower.staleness_ms() or 0) > 300, "the staleness bound")
            state = follower.state
            revoked, valid = artefacts
            assert isinstance(verifier.decide(view, exchange(revoked), state).error, ConsentRevoked)
            closed = verifier.decide(view, exchange(valid), state)
            assert isinstance(closed.error, ConsentStatusStale) and closed.stale_feed
            opened = verifier.decide(view, exchange(valid, S_BIRTH), state)
            assert opened.allowed
            assert opened.justification == audit_pb2.JUSTIFICATION_STALE_FEED_OPEN
        finally:
            await follower.stop()
            await channel.close()

    asyncio.run(main())
