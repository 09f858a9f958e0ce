"""End to end through real processes: client -> consumer SS -> provider SS -> adapter.

Every tampering case sends a crafted envelope straight to the provider SS over
mutual TLS (as a compromised or buggy consumer SS would) or a bad call to the
consumer SS, and checks the precise error code and origin, that nothing reached
the adapter, and that the refusal was logged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from audit_log.store import open_store
from govbus import errors
from govbus import metadata as md
from govbus.client import Bus as Client
from govbus.crypto.keys import private_key_pem
from govbus.crypto.pki import (
    CertificateAuthority,
    IssuedKey,
    Role,
    certificate_der,
    certificate_pem,
)
from govbus.errors import Origin
from govbus.pb.govbus.v1 import audit_pb2, diagnostics_pb2, diagnostics_pb2_grpc, envelope_pb2
from loadtest.harness import DIAG_METHODS, PASSPHRASE, Bus
from security_server.consumer import own_time_left
from security_server.envelope import seal
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

CONSUMER = "KZ/GOV/990140000017"
PROVIDER = "KZ/GOV/040340123459"
CLIENT = f"{CONSUMER}/tson"
OUTSIDER = f"{CONSUMER}/other"
SERVICE = f"{PROVIDER}/diag/echo/v1"
ECHO = "/govbus.v1.Diagnostics/Echo"
LIMIT = 4096


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    bus = Bus(tmp_path_factory.mktemp("bus"))
    try:
        for member in (CONSUMER, PROVIDER):
            bus.member(member)
        bus.subsystem(CLIENT)
        bus.subsystem(OUTSIDER)
        bus.subsystem(f"{PROVIDER}/diag")
        bus.server(f"{CONSUMER}/ss1")
        provider = bus.server(f"{PROVIDER}/ss1")
        bus.publish(SERVICE, "govbus.v1.Diagnostics", DIAG_METHODS, [provider.id], max_bytes=LIMIT)
        bus.grant(CLIENT, SERVICE)
        bus.diagnostics = bus.start_diagnostics()  # type: ignore[attr-defined]
        provider.adapters[SERVICE] = bus.diagnostics  # type: ignore[attr-defined]
        bus.write_conf()
        bus.start_server(f"{CONSUMER}/ss1")
        bus.start_server(f"{PROVIDER}/ss1")
        bus.wait_for_conf(bus.write_conf())
        yield bus
    finally:
        bus.stop()


def _client(bus: Bus, client: str = CLIENT) -> Client:
    return Client(bus.servers[f"{CONSUMER}/ss1"].consumer_address, client, initiator="operator-7")


async def _adapter_calls(bus: Bus) -> int:
    async with grpc.aio.insecure_channel(bus.diagnostics) as channel:  # type: ignore[attr-defined]
        stats = await diagnostics_pb2_grpc.DiagnosticsStub(channel).Stats(
            diagnostics_pb2.StatsRequest()
        )
        return int(stats.calls)


def test_unary_exchange_carries_metadata(bus: Bus) -> None:
    async def run() -> diagnostics_pb2.EchoReply:
        async with _client(bus) as client:
            stub = client.stub(
                diagnostics_pb2_grpc.DiagnosticsStub,
                SERVICE,
                subject="900517312343",
                purpose="connectivity check",
            )
            reply: diagnostics_pb2.EchoReply = await stub.Echo(
                diagnostics_pb2.EchoRequest(payload=b"hello")
            )
            return reply

    reply = asyncio.run(run())
    assert reply.payload == b"hello"
    seen = dict(line.split("=", 1) for line in reply.metadata)
    assert seen[md.CLIENT] == CLIENT
    assert seen[md.SERVICE] == SERVICE
    assert seen[md.SUBJECT] == "900517312343"
    assert seen[md.PURPOSE] == "connectivity check"
    assert seen[md.INITIATOR] == "operator-7"
    assert len(seen[md.REQUEST_ID]) == 32


def test_server_stream_in_order(bus: Bus) -> None:
    async def run() -> list[int]:
        async with _client(bus) as client:
            stub = client.stub(diagnostics_pb2_grpc.DiagnosticsStub, SERVICE)
            return [
                m.sequence
                async for m in stub.EchoStream(diagnostics_pb2.EchoRequest(payload=b"x", count=7))
            ]

    assert asyncio.run(run()) == list(range(7))


def test_provider_error_reaches_client_with_origin(bus: Bus) -> None:
    async def run() -> None:
        async with _client(bus) as client:
            stub = client.stub(diagnostics_pb2_grpc.DiagnosticsStub, SERVICE)
            await stub.Echo(diagnostics_pb2.EchoRequest(fail_with="NOT_FOUND"))

    with pytest.raises(errors.NotFound) as info:
        asyncio.run(run())
    assert info.value.origin is Origin.PROVIDER


def test_stream_error_after_messages(bus: Bus) -> None:
    got: list[int] = []

    async def run() -> None:
        async with _client(bus) as client:
            stub = client.stub(diagnostics_pb2_grpc.DiagnosticsStub, SERVICE)
            async for message in stub.EchoStream(
                diagnostics_pb2.EchoRequest(count=3, fail_with="FAILED_PRECONDITION")
            ):
                got.append(message.sequence)

    with pytest.raises(errors.FailedPrecondition):
        asyncio.run(run())
    assert got == [0, 1, 2]


def test_deadline_propagates(bus: Bus) -> None:
    async def run() -> None:
        async with _client(bus) as client:
            stub = client.stub(diagnostics_pb2_grpc.DiagnosticsStub, SERVICE)
            await stub.Echo(diagnostics_pb2.EchoRequest(delay_ms=3000), timeout=0.5)

    with pytest.raises(errors.DeadlineExceeded):
        asyncio.run(run())


def test_own_deadline_keeps_back_a_little_of_the_callers() -> None:
    """The consumer SS's deadline passes just before its caller's, so it sees (logs and
    counts in the breaker) a registry that did not answer, not a caller hanging up."""
    assert own_time_left(None) is None
    assert own_time_left(1.5) == pytest.approx(1.425)  # 5 %
    assert own_time_left(0.2) == pytest.approx(0.18)  # at least 20 ms
    assert own_time_left(30.0) == pytest.approx(29.8)  # at most 200 ms
    assert own_time_left(0.01) == pytest.approx(0.005)  # at most half
    assert own_time_left(-1.0) == -1.0  # spent stays spent


# --- refusals at the consumer side -----------------------------------------------------


def _raw_call(
    bus: Bus, metadata: list[tuple[str, str]], body: bytes = b"", method: str = ECHO
) -> errors.GovbusError:
    async def run() -> errors.GovbusError:
        async with grpc.aio.insecure_channel(
            bus.servers[f"{CONSUMER}/ss1"].consumer_address
        ) as channel:
            try:
                await channel.unary_unary(method)(body, metadata=metadata, timeout=5)
            except grpc.aio.AioRpcError as exc:
                return errors.from_rpc_error(exc)
        raise AssertionError("call was not refused")

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("metadata", "method", "size", "code", "origin"),
    [
        ([(md.SERVICE, SERVICE)], ECHO, 0, "INVALID_REQUEST", Origin.CLIENT),
        (
            [(md.CLIENT, "KZ/GOV/990140000018/tson"), (md.SERVICE, SERVICE)],
            ECHO,
            0,
            "INVALID_IDENTIFIER",
            Origin.CLIENT,
        ),
        (
            [(md.CLIENT, CLIENT), (md.SERVICE, SERVICE), (md.SUBJECT, "123")],
            ECHO,
            0,
            "INVALID_IDENTIFIER",
            Origin.CLIENT,
        ),
        (
            [(md.CLIENT, CLIENT), (md.SERVICE, f"{PROVIDER}/diag/nothing/v1")],
            ECHO,
            0,
            "UNKNOWN_SERVICE",
            Origin.CLIENT,
        ),
        (
            [(md.CLIENT, CLIENT), (md.SERVICE, SERVICE)],
            "/govbus.v1.Diagnostics/Nope",
            0,
            "UNKNOWN_METHOD",
            Origin.CLIENT,
        ),
        (
            [(md.CLIENT, OUTSIDER), (md.SERVICE, SERVICE)],
            ECHO,
            0,
            "ACCESS_DENIED",
            Origin.CONSUMER_SS,
        ),
        (
            [(md.CLIENT, f"{PROVIDER}/diag"), (md.SERVICE, SERVICE)],
            ECHO,
            0,
            "ACCESS_DENIED",
            Origin.CONSUMER_SS,
        ),
        (
            [(md.CLIENT, CLIENT), (md.SERVICE, SERVICE)],
            ECHO,
            LIMIT + 1,
            "PAYLOAD_TOO_LARGE",
            Origin.CLIENT,
        ),
    ],
    ids=[
        "no-client",
        "bad-client",
        "bad-subject",
        "unknown-service",
        "unknown-method",
        "no-access",
        "foreign-member",
        "too-large",
    ],
)
def test_consumer_refusals(
    bus: Bus, metadata: list[tuple[str, str]], method: str, size: int, code: str, origin: Origin
) -> None:
    before = asyncio.run(_adapter_calls(bus))
    error = _raw_call(bus, metadata, b"\x0a" + bytes([0]) if not size else b"x" * size, method)
    assert (error.code, error.origin) == (code, origin), error
    assert asyncio.run(_adapter_calls(bus)) == before


# --- refusals at the provider side: crafted envelopes over mutual TLS ------------------


class _Crafter:
    """Sends envelopes to the provider SS as the consumer SS would, with its TLS identity."""

    def __init__(self, bus: Bus, tls: IssuedKey | None = None, ca_pem: bytes | None = None) -> None:
        consumer = bus.servers[f"{CONSUMER}/ss1"]
        provider = bus.servers[f"{PROVIDER}/ss1"]
        tls = tls or consumer.tls
        self.address = provider.address
        self.credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem or certificate_pem(bus.ca.certificate),
            private_key=private_key_pem(tls.key),
            certificate_chain=certificate_pem(tls.certificate),
        )
        self.signing = consumer.signing

    def header(self, **changes: Any) -> envelope_pb2.Header:
        now = int(time.time() * 1000)
        header = envelope_pb2.Header(
            kind=envelope_pb2.REQUEST,
            request_id=uuid.uuid4().hex,
            client=CLIENT,
            service=SERVICE,
            method=ECHO,
            sent_at_ms=now,
            deadline_ms=now + 5000,
            sender_server=f"{CONSUMER}/ss1",
        )
        for key, value in changes.items():
            setattr(header, key, value)
        return header

    def seal(
        self, header: envelope_pb2.Header, body: bytes = b"", key: IssuedKey | None = None
    ) -> envelope_pb2.SignedMessage:
        key = key or self.signing
        signed, _ = seal(header, body, key.signer(), certificate_der(key.certificate))
        return signed

    def send(self, signed: envelope_pb2.SignedMessage) -> errors.GovbusError | envelope_pb2.Header:
        """The provider's answer header (signed refusal or success), or the plain error."""

        async def run() -> errors.GovbusError | envelope_pb2.Header:
            async with grpc.aio.secure_channel(self.address, self.credentials) as channel:
                call = channel.unary_unary(
                    "/govbus.v1.Exchange/Unary",
                    request_serializer=envelope_pb2.SignedMessage.SerializeToString,
                    response_deserializer=envelope_pb2.SignedMessage.FromString,
                )
                try:
                    answer = await call(signed, timeout=5)
                except grpc.aio.AioRpcError as exc:
                    return errors.from_rpc_error(exc)
                return envelope_pb2.Header.FromString(answer.header)

        return asyncio.run(run())


def _code(result: errors.GovbusError | envelope_pb2.Header) -> tuple[str, str]:
    if isinstance(result, errors.GovbusError):
        return result.code, result.origin.value
    return result.error_code, result.error_origin


def test_crafted_valid_envelope_is_served(bus: Bus) -> None:
    crafter = _Crafter(bus)
    body = diagnostics_pb2.EchoRequest(payload=b"direct").SerializeToString()
    answer = crafter.send(crafter.seal(crafter.header(), body))
    assert isinstance(answer, envelope_pb2.Header)
    assert answer.status_code == 0 and answer.kind == envelope_pb2.RESPONSE


@pytest.mark.parametrize("part", ["header", "body", "signature"])
def test_flipped_byte_refused(bus: Bus, part: str) -> None:
    crafter = _Crafter(bus)
    signed = crafter.seal(crafter.header(), b"\x0a\x02hi")
    if part == "signature":
        value = bytearray(signed.signature.value)
        value[10] ^= 1
        signed.signature.value = bytes(value)
    else:
        value = bytearray(getattr(signed, part))
        value[len(value) // 2] ^= 1
        setattr(signed, part, bytes(value))
    before = asyncio.run(_adapter_calls(bus))
    code, origin = _code(crafter.send(signed))
    assert code in ("SIGNATURE_INVALID", "INVALID_REQUEST") and origin == "PROVIDER_SS"
    assert asyncio.run(_adapter_calls(bus)) == before


def test_replayed_envelope_refused(bus: Bus) -> None:
    crafter = _Crafter(bus)
    signed = crafter.seal(crafter.header(), b"")
    first = crafter.send(signed)
    assert isinstance(first, envelope_pb2.Header) and first.status_code == 0
    before = asyncio.run(_adapter_calls(bus))
    assert _code(crafter.send(signed)) == ("REPLAY_DETECTED", "PROVIDER_SS")
    assert asyncio.run(_adapter_calls(bus)) == before


def test_stale_unknown_unauthorised_oversized(bus: Bus) -> None:
    crafter = _Crafter(bus)
    old = int(time.time() * 1000) - 600_000
    cases = [
        (crafter.header(sent_at_ms=old, deadline_ms=0), b"", "STALE_MESSAGE"),
        (crafter.header(service=f"{PROVIDER}/diag/nothing/v1"), b"", "UNKNOWN_SERVICE"),
        (crafter.header(client=OUTSIDER), b"", "ACCESS_DENIED"),
        (crafter.header(), b"x" * (LIMIT + 1), "PAYLOAD_TOO_LARGE"),
        (crafter.header(method="/govbus.v1.Diagnostics/EchoStream"), b"", "INVALID_REQUEST"),
        (
            crafter.header(client=f"{PROVIDER}/diag"),
            b"",
            "SIGNATURE_INVALID",
        ),  # signed by another member
    ]
    before = asyncio.run(_adapter_calls(bus))
    for header, body, code in cases:
        assert _code(crafter.send(crafter.seal(header, body))) == (code, "PROVIDER_SS"), code
    assert asyncio.run(_adapter_calls(bus)) == before


def test_signing_certificate_of_another_ca(bus: Bus, tmp_path: Path) -> None:
    crafter = _Crafter(bus)
    other = CertificateAuthority.init(tmp_path / "other", PASSPHRASE)
    forged_key = other.issue_key(Role.SIGNING, CONSUMER)
    assert _code(crafter.send(crafter.seal(crafter.header(), b"", forged_key))) == (
        "CERTIFICATE_INVALID",
        "PROVIDER_SS",
    )


def test_tls_certificate_of_another_ca_cannot_connect(bus: Bus, tmp_path: Path) -> None:
    other = CertificateAuthority.init(tmp_path / "other", PASSPHRASE)
    stranger = other.issue_key(Role.SERVER, f"{CONSUMER}/ss1", hosts=["127.0.0.1"])
    crafter = _Crafter(bus, tls=stranger)
    result = crafter.send(crafter.seal(crafter.header(), b""))
    assert isinstance(result, errors.ServiceUnavailable)  # the TLS handshake itself fails


def test_unregistered_server_certificate_refused(bus: Bus) -> None:
    stranger = bus.ca.issue_key(Role.SERVER, f"{CONSUMER}/ss9", hosts=["127.0.0.1"])
    crafter = _Crafter(bus, tls=stranger)
    assert _code(crafter.send(crafter.seal(crafter.header(), b""))) == (
        "ACCESS_DENIED",
        "PROVIDER_SS",
    )


def test_revoked_signing_certificate(bus: Bus) -> None:
    crafter = _Crafter(bus)
    second = bus.ca.issue_key(Role.SIGNING, CONSUMER)
    bus.revoke_certificate(second.certificate.serial_number)
    bus.wait_for_conf(bus.write_conf())
    assert _code(crafter.send(crafter.seal(crafter.header(), b"", second))) == (
        "CERTIFICATE_REVOKED",
        "PROVIDER_SS",
    )


# --- the logs: last, because it stops the servers ------------------------------------


def _records(server_folder: Path) -> list[audit_pb2.ExchangeRecord]:
    store = open_store(f"sqlite:///{server_folder / 'state' / 'audit.db'}", create=False)
    try:
        count, _, _ = store.bounds()
        return [audit_pb2.ExchangeRecord.FromString(leaf) for _, _, leaf in store.scan(0, count)]
    finally:
        store.close()


def test_zz_both_logs_hold_every_exchange_and_verify(bus: Bus) -> None:
    consumer, provider = bus.servers[f"{CONSUMER}/ss1"], bus.servers[f"{PROVIDER}/ss1"]
    for server in (consumer, provider):
        assert server.process is not None
        assert server.process.stop() == 0  # graceful: in-flight finished, log flushed
    for server in (consumer, provider):
        store = f"sqlite:///{server.folder / 'state' / 'audit.db'}"
        result = run_cli(
            "audit",
            "verify",
            "--store",
            store,
            "--cert",
            str(server.folder / "signing.cert.pem"),
            "--ca",
            str(bus.ca.directory / "ca.cert.pem"),
            "--quiet",
        )
        assert "Traceback" not in result.stderr
        who = run_cli(
            "audit",
            "who-accessed",
            "--iin",
            "900517312343",
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
            "--store",
            store,
            "--pseudonym-key",
            str(server.folder / "pseudonym.key"),
            "--json",
        )
        assert CLIENT in who.stdout and SERVICE in who.stdout
        assert "900517312343" not in (server.folder / "state" / "audit.db").read_bytes().decode(
            "latin-1"
        )
    consumer_records, provider_records = _records(consumer.folder), _records(provider.folder)
    # The unary exchange of the first test: request and response on both sides, bound by one hash.
    exchanged = [
        r for r in provider_records if r.phase == audit_pb2.PHASE_RESPONSE and r.status_code == 0
    ]
    assert exchanged
    request_hash = exchanged[0].request_hash
    phases = {
        (r.side, r.phase)
        for r in consumer_records + provider_records
        if r.request_hash == request_hash
    }
    assert phases == {
        (audit_pb2.SIDE_CONSUMER, audit_pb2.PHASE_REQUEST),
        (audit_pb2.SIDE_CONSUMER, audit_pb2.PHASE_RESPONSE),
        (audit_pb2.SIDE_PROVIDER, audit_pb2.PHASE_REQUEST),
        (audit_pb2.SIDE_PROVIDER, audit_pb2.PHASE_RESPONSE),
    }
    refused = {r.error_code for r in provider_records if r.phase == audit_pb2.PHASE_REFUSED}
    assert {
        "SIGNATURE_INVALID",
        "REPLAY_DETECTED",
        "STALE_MESSAGE",
        "UNKNOWN_SERVICE",
        "ACCESS_DENIED",
        "PAYLOAD_TOO_LARGE",
        "CERTIFICATE_INVALID",
        "CERTIFICATE_REVOKED",
        "INVALID_REQUEST",
    } <= refused
    refused_here = {r.error_code for r in consumer_records if r.status_code}
    # An agency's answer, even NOT_FOUND, is not a denial of access.
    assert all(
        r.decision == audit_pb2.DECISION_ALLOWED
        for r in consumer_records
        if r.error_code == "NOT_FOUND"
    )
    assert {
        "INVALID_REQUEST",
        "INVALID_IDENTIFIER",
        "UNKNOWN_SERVICE",
        "UNKNOWN_METHOD",
        "ACCESS_DENIED",
        "PAYLOAD_TOO_LARGE",
        "NOT_FOUND",
    } <= refused_here
