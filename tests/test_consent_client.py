"""The consumer's side: `ConsentHolder` fetches an artefact once, keeps it until it expires,
refuses revoked ones early; metadata carries it to the consumer security server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from consent.client import (
    CONSENT_ARTEFACT_METADATA,
    CONSENT_ID_METADATA,
    ConsentHolder,
    consent_from_metadata,
    consent_metadata,
)
from consent.sms import read_outbox
from consent.verifier import ConsentVerifier, ExchangeFacts, RevocationState
from govbus.errors import ConsentExpired, ConsentInvalid, ConsentRevoked, NotFound
from govbus.pb.govbus.v1 import consent_pb2, usage_pb2
from tests.consent_world import (
    ALICE,
    CLIENT,
    DAY_MS,
    PURPOSE,
    S_PERSON,
    World,
    running_service,
)


def test_metadata_round_trip() -> None:
    metadata = consent_metadata("c-1", b"\x00artefact")
    assert dict(metadata) == {
        CONSENT_ID_METADATA: "c-1",
        CONSENT_ARTEFACT_METADATA: b"\x00artefact",
    }
    assert consent_from_metadata([("other", "x"), *metadata]) == ("c-1", b"\x00artefact")
    assert consent_from_metadata(None) == ("", b"")
    # a text value under the binary key (or the reverse) is not taken
    assert consent_from_metadata([(CONSENT_ARTEFACT_METADATA, "text")]) == ("", b"")


def test_holder_fetches_once_and_refuses_revoked_early(tmp_path: Path) -> None:
    world = World.create(tmp_path)

    async def main() -> None:
        async with running_service(world, tmp_path / "svc") as svc:
            client = svc.client()
            operator = svc.operator_client()
            try:
                await operator.set_phone(ALICE, "+77011234567")
                asked = await client.request_consent(
                    subject=ALICE,
                    grantee=CLIENT,
                    scopes=[(S_PERSON, [])],
                    purpose_code=PURPOSE,
                    purpose_text="birth registration",
                    expires_at_ms=int(time.time() * 1000) + DAY_MS,
                    method=usage_pb2.CONSENT_METHOD_OTP,
                )
                await client.confirm_otp(asked.request_id, read_outbox(svc.outbox)[-1].code or "")
                fetches: list[str] = []

                async def counted(consent_id: str) -> consent_pb2.ConsentRecord:
                    fetches.append(consent_id)
                    return await client.get(consent_id)

                holder = ConsentHolder(counted, anchor=lambda: world.anchor)
                results = await asyncio.gather(
                    *(holder.artefact(asked.consent_id) for _ in range(5))
                )
                assert len(set(results)) == 1 and fetches == [asked.consent_id]
                metadata = await holder.metadata(asked.consent_id)
                assert fetches == [asked.consent_id]  # from the holder, not the service
                consent_id, artefact = consent_from_metadata(metadata)
                # what the holder gives is what the provider accepts
                decision = ConsentVerifier().check(
                    world.view(),
                    ExchangeFacts(
                        client=CLIENT,
                        service=S_PERSON,
                        subject=ALICE,
                        purpose=PURPOSE,
                        consent_id=consent_id,
                        consent_artefact=artefact,
                    ),
                    RevocationState(frozenset(), 0, int(time.time() * 1000)),
                )
                assert decision.consent_id == asked.consent_id
                with pytest.raises(NotFound):
                    await holder.artefact("no-such-consent")
                # revoked: the holder learns it on its next fetch and refuses before any exchange
                await operator.revoke(asked.consent_id)
                holder.forget(asked.consent_id)
                with pytest.raises(ConsentRevoked):
                    await holder.artefact(asked.consent_id)
            finally:
                await client.close()
                await operator.close()

    asyncio.run(main())


def test_holder_keeps_until_expiry_and_checks_what_it_is_given(tmp_path: Path) -> None:
    world = World.create(tmp_path)
    now = [time.time()]
    raw = world.signed(world.artefact(expires_at_ms=int(now[0] * 1000) + 60_000))
    answers: list[consent_pb2.ConsentRecord] = []

    async def fetch(consent_id: str) -> consent_pb2.ConsentRecord:
        return answers.pop(0)

    async def main() -> None:
        holder = ConsentHolder(fetch, anchor=lambda: world.anchor, clock=lambda: now[0])
        assert holder.put(raw) == "c-0001"
        assert await holder.artefact("c-0001") == raw  # no fetch needed
        now[0] += 61
        answers.append(
            consent_pb2.ConsentRecord(signed_consent=raw, state=consent_pb2.CONSENT_STATE_EXPIRED)
        )
        with pytest.raises(ConsentExpired):
            await holder.artefact("c-0001")
        other = world.signed(world.artefact(consent_id="c-other"))
        answers.append(
            consent_pb2.ConsentRecord(signed_consent=other, state=consent_pb2.CONSENT_STATE_ACTIVE)
        )
        with pytest.raises(ConsentInvalid, match="answered artefact c-other"):
            await holder.artefact("c-0002")
        with pytest.raises(ConsentInvalid):
            holder.put(b"garbage")

    asyncio.run(main())
