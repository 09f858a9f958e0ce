""" "Who accessed my data": citizen tokens, the provider's answer from its audit records,
and the consent service asking every provider security server over real mutual TLS."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from consent.service import mtls_channel_factory
from consent.usage import (
    AccessHistoryServicer,
    find_usage_everywhere,
    issue_citizen_token,
    provider_servers,
    usage_entries,
    verify_citizen_token,
)
from govbus.crypto.keys import private_key_pem
from govbus.crypto.pki import Role, certificate_der, certificate_pem
from govbus.errors import CertificateInvalid, SignatureInvalid, Unauthenticated
from govbus.globalconf import GlobalConfView
from govbus.pb.govbus.v1 import audit_pb2, globalconf_pb2, usage_pb2, usage_pb2_grpc
from govbus.serving import DEFAULT_OPTIONS
from tests.consent_world import ALICE, BOB, CLIENT, S_CASES, S_PERSON, World, running_service

PSEUDONYM_KEY = b"k" * 32
OTP = usage_pb2.CONSENT_METHOD_OTP


def pseudonym(iin: str) -> bytes:
    return hmac.digest(PSEUDONYM_KEY, iin.encode(), "sha256")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.create(tmp_path)


def record(
    request_id: str,
    at_ms: int,
    subject: str = ALICE,
    *,
    side: int = audit_pb2.SIDE_PROVIDER,
    phase: int = audit_pb2.PHASE_REQUEST,
    hidden_until_ms: int = 0,
    **fields: object,
) -> audit_pb2.ExchangeRecord:
    values: dict[str, object] = {
        "request_id": request_id,
        "logged_at_ms": at_ms,
        "side": side,
        "phase": phase,
        "client": CLIENT,
        "service": S_PERSON,
        "method": "/kz.gov.gbdfl.v1.PersonRegistry/Get",
        "subject_pseudonym": pseudonym(subject),
        "purpose": "birth-registration",
        "initiator": "operator-001",
        "justification": audit_pb2.JUSTIFICATION_CONSENT,
        "consent_id": "c-1",
        "decision": audit_pb2.DECISION_ALLOWED,
        "hidden_until_ms": hidden_until_ms,
    }
    values.update(fields)
    return audit_pb2.ExchangeRecord(**values)  # type: ignore[arg-type]


class MemoryAuditLog:
    """A `UsageSource` over real ExchangeRecords held in memory (stands where the SS's
    audit log will; the search contract is the same)."""

    def __init__(self, records: Sequence[audit_pb2.ExchangeRecord]) -> None:
        self.records = list(records)
        self.asked: list[tuple[bytes, int, int]] = []

    async def find(
        self, pseudonym: bytes, since_ms: int, until_ms: int
    ) -> list[audit_pb2.ExchangeRecord]:
        self.asked.append((pseudonym, since_ms, until_ms))
        return [
            r
            for r in self.records
            if r.subject_pseudonym == pseudonym and since_ms <= r.logged_at_ms < until_ms
        ]


# --- tokens -----------------------------------------------------------------------------


def test_citizen_token_round_trip_and_refusals(world: World) -> None:
    now = world.now_ms
    token = issue_citizen_token(world.service_key, ALICE, OTP, now, ttl_ms=60_000)
    assert verify_citizen_token(token, world.anchor, now).subject == ALICE
    with pytest.raises(Unauthenticated, match="expired"):
        verify_citizen_token(token, world.anchor, now + 60_000)
    with pytest.raises(Unauthenticated):
        verify_citizen_token(usage_pb2.SignedCitizenToken(), world.anchor, now)
    altered = usage_pb2.SignedCitizenToken()
    altered.CopyFrom(token)
    body = usage_pb2.CitizenToken.FromString(token.token)
    body.subject = BOB
    altered.token = body.SerializeToString()
    with pytest.raises(SignatureInvalid):
        verify_citizen_token(altered, world.anchor, now)
    stranger = world.ca.issue_key(Role.CITIZEN, BOB)
    self_made = usage_pb2.SignedCitizenToken(
        token=altered.token,
        signature=stranger.signer().sign(altered.token),
        signer_certificate=certificate_der(stranger.certificate),
    )
    with pytest.raises(CertificateInvalid, match="role"):
        verify_citizen_token(self_made, world.anchor, now)


# --- the provider's answer (pure) ----------------------------------------------------------


def test_usage_entries_one_per_exchange_without_hidden_or_foreign(world: World) -> None:
    now = world.now_ms
    records = [
        record("r1", now - 5000),
        # the same exchange's other records: response, consumer side
        record("r1", now - 4990, phase=audit_pb2.PHASE_RESPONSE),
        record("r1", now - 5010, side=audit_pb2.SIDE_CONSUMER),
        # a refusal is listed too, with its code
        record(
            "r2",
            now - 3000,
            phase=audit_pb2.PHASE_REFUSED,
            decision=audit_pb2.DECISION_DENIED,
            error_code="CONSENT_REVOKED",
            justification=audit_pb2.JUSTIFICATION_NONE,
        ),
        # under a legal basis, hidden until tomorrow: not shown
        record(
            "r3",
            now - 2000,
            hidden_until_ms=now + 86_400_000,
            service=S_CASES,
            legal_basis_id="lb-valid",
            law_reference="Criminal Procedure Code art. 199",
            justification=audit_pb2.JUSTIFICATION_LEGAL_BASIS,
        ),
        # hidden until yesterday: shown now, with its law reference
        record(
            "r4",
            now - 1000,
            hidden_until_ms=now - 1,
            service=S_CASES,
            legal_basis_id="lb-old",
            law_reference="Court order 2-11/2024",
            justification=audit_pb2.JUSTIFICATION_LEGAL_BASIS,
        ),
        record("r5", now - 500, BOB),  # about someone else
    ]
    entries = usage_entries(records, pseudonym(ALICE), now, server="KZ/GOV/x/ss1")
    assert [e.request_id for e in entries] == ["r1", "r2", "r4"]
    first, refused, legal = entries
    assert first.consumer == CLIENT and first.service == S_PERSON
    assert first.purpose == "birth-registration" and first.initiator == "operator-001"
    assert first.consent_id == "c-1" and first.time_ms == now - 5000
    assert first.server == "KZ/GOV/x/ss1"
    assert refused.error_code == "CONSENT_REVOKED"
    assert refused.decision == audit_pb2.DECISION_DENIED
    assert legal.law_reference == "Court order 2-11/2024"
    assert legal.justification == audit_pb2.JUSTIFICATION_LEGAL_BASIS
    assert usage_entries(records, b"", now) == []  # no pseudonym, no answer


# --- real servers ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def access_history_server(
    world: World, server_id: str, log: MemoryAuditLog
) -> AsyncIterator[str]:
    """A provider's AccessHistory endpoint on mutual TLS, as a security server mounts it."""
    server = grpc.aio.server(options=DEFAULT_OPTIONS)
    usage_pb2_grpc.add_AccessHistoryServicer_to_server(
        AccessHistoryServicer(log, pseudonym, lambda: world.anchor, server_id), server
    )
    tls = world.ca.issue_key(Role.SERVER, server_id, hosts=["127.0.0.1"])
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(private_key_pem(tls.key), certificate_pem(tls.certificate))],
            root_certificates=world.ca_pem,
            require_client_auth=True,
        ),
    )
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def conf_with(world: World, addresses: dict[str, str]) -> GlobalConfView:
    conf = world.conf(servers=list(addresses))
    for service in conf.services:
        del service.servers[:]
        service.servers.extend(addresses)
    for server in conf.security_servers:
        server.address = addresses[server.id]
    return world.view(conf)


def factory(world: World):  # type: ignore[no-untyped-def]
    return mtls_channel_factory(
        world.ca_pem, private_key_pem(world.tls_key.key), certificate_pem(world.tls_key.certificate)
    )


def test_provider_answers_only_for_the_tokens_subject(world: World) -> None:
    now = int(time.time() * 1000)
    log = MemoryAuditLog([record("a1", now - 1000), record("b1", now - 900, BOB)])

    async def main() -> None:
        async with access_history_server(world, "KZ/GOV/x/ss1", log) as address:
            channel = factory(world)(globalconf_pb2.SecurityServer(address=address))
            stub = usage_pb2_grpc.AccessHistoryStub(channel)
            try:
                token = issue_citizen_token(world.service_key, ALICE, OTP, now)
                answer = await stub.FindUsage(
                    usage_pb2.FindUsageRequest(citizen=token, since_ms=0), timeout=5
                )
                assert [e.request_id for e in answer.entries] == ["a1"]
                assert answer.server == "KZ/GOV/x/ss1" and not answer.truncated
                assert log.asked[-1][0] == pseudonym(ALICE)
                for bad in (
                    usage_pb2.FindUsageRequest(since_ms=0),  # no token
                    usage_pb2.FindUsageRequest(citizen=token, since_ms=10, until_ms=5),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await stub.FindUsage(bad, timeout=5)
                    assert caught.value.code() in (
                        grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.INVALID_ARGUMENT,
                    )
                limited = await stub.FindUsage(
                    usage_pb2.FindUsageRequest(citizen=token, limit=1), timeout=5
                )
                assert len(limited.entries) == 1
            finally:
                await channel.close()

    asyncio.run(main())


def test_aggregator_merges_every_provider_and_marks_the_silent_one(
    world: World, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    gbdfl = MemoryAuditLog([record("g1", now - 3000), record("g2", now - 1000)])
    zags = MemoryAuditLog(
        [record("z1", now - 2000, service="KZ/GOV/x/zags/birth/v1", client="KZ/GOV/y/portal")]
    )

    async def main() -> None:
        async with (
            access_history_server(world, "KZ/GOV/1/ss1", gbdfl) as first,
            access_history_server(world, "KZ/GOV/2/ss1", zags) as second,
        ):
            # a third provider that is down: a port nothing listens on
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                dead_port = probe.getsockname()[1]
            addresses = {
                "KZ/GOV/1/ss1": first,
                "KZ/GOV/2/ss1": second,
                "KZ/GOV/3/ss1": f"127.0.0.1:{dead_port}",
            }
            view = conf_with(world, addresses)
            assert [s.id for s in provider_servers(view)] == sorted(addresses)
            token = issue_citizen_token(world.service_key, ALICE, OTP, now)
            merged = await find_usage_everywhere(view, token, 0, 0, factory(world), wait_s=3)
            assert [e.request_id for e in merged.entries] == ["g1", "z1", "g2"]
            assert [e.server for e in merged.entries] == [
                "KZ/GOV/1/ss1",
                "KZ/GOV/2/ss1",
                "KZ/GOV/1/ss1",
            ]
            status = {s.server: s for s in merged.servers}
            assert status["KZ/GOV/1/ss1"].answered and status["KZ/GOV/1/ss1"].entries == 2
            assert status["KZ/GOV/2/ss1"].answered
            silent = status["KZ/GOV/3/ss1"]
            assert not silent.answered and silent.error_code == "SERVICE_UNAVAILABLE"

            # the same through the consent service, as a citizen calls it
            async with running_service(
                world, tmp_path / "svc", globalconf=view, channel_factory=factory(world)
            ) as svc:
                client = svc.client()
                try:
                    alice = world.citizens[ALICE]
                    own = await client.login_eds(
                        ALICE, alice.signer(), certificate_der(alice.certificate)
                    )
                    mine = await client.find_my_usage(own)
                    assert [e.request_id for e in mine.entries] == ["g1", "z1", "g2"]
                    assert sum(not s.answered for s in mine.servers) == 1
                    with pytest.raises(Unauthenticated):
                        await client.find_my_usage(usage_pb2.SignedCitizenToken())
                finally:
                    await client.close()

    asyncio.run(main())
