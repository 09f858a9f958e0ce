"""Consent over real exchanges: client -> consumer SS -> provider SS -> adapter.

One bus for the module (loadtest.harness): a CA, a signed global configuration
file, a consumer security server, TWO provider security servers (the civil
registry's and the person registry's), the diagnostics adapter published under
two personal-data service ids — one that needs the person's consent, one that
takes a consent or a registered legal basis — and a real `govbus consent serve`
process the providers follow. Every consent used here was given through that
consent service: requested, then confirmed by a one-time code read from its SMS
outbox or by the citizen's own EDS key.

- The decision matrix: each refusal reaches the client as the precise code with
  origin PROVIDER_SS, the adapter receives nothing (its call counter does not
  move: no personal data can reach the consumer), and the provider's audit log
  holds a REFUSED record naming the consent or legal basis cited. Allowed
  exchanges are logged with their justification, law reference and hidden-until.
- The consent service killed with SIGKILL: exchanges go on, decided locally; a
  revocation the providers never saw is enforced once the staleness bound passes
  (fail closed), and as a revocation once the service is back on the same state.
- "Who accessed my data": the citizen logs in (EDS, or a one-time code through
  the CLI) and the consent service asks both provider security servers, which
  answer from their own audit logs; legal-basis exchanges still hidden are left out.

The audit logs are read while the servers run (SQLite in WAL mode lets a reader
in beside the writer); a refusal is durable before the provider answers it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from audit_log.store import open_store
from consent.client import ConsentClient
from consent.sms import latest_code, read_outbox
from govbus import errors
from govbus import metadata as md
from govbus.client import Bus as Client
from govbus.crypto.keys import KeySigner, generate_key
from govbus.crypto.pki import CertificateAuthority, Role, cert_fingerprint, certificate_der
from govbus.errors import GovbusError, Origin
from govbus.ids import Bin, Iin, Sex
from govbus.pb.govbus.v1 import (
    audit_pb2,
    consent_pb2,
    diagnostics_pb2,
    diagnostics_pb2_grpc,
    globalconf_pb2,
    usage_pb2,
)
from loadtest.harness import DIAG_METHODS, PASSPHRASE, Bus
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def _bin(serial: int) -> str:
    while (built := Bin.build(2004, 3, serial)) is None:
        serial += 1
    return built.value


def _iin(serial: int, birth: dt.date, sex: Sex) -> str:
    while (built := Iin.build(birth, sex, serial)) is None:
        serial += 1
    return built.value


TSON, GBDFL, ZAGS = _bin(303), _bin(101), _bin(202)
CLIENT = f"KZ/GOV/{TSON}/tson"  # the service centre's application
OTHER = f"KZ/GOV/{TSON}/loans"  # another consumer subsystem, with access rights too
SS_CONSUMER = f"KZ/GOV/{TSON}/ss1"
SS_A = f"KZ/GOV/{GBDFL}/ss1"  # the person registry's provider security server
SS_B = f"KZ/GOV/{ZAGS}/ss1"  # the civil registry's provider security server
S_PERSON = f"KZ/GOV/{GBDFL}/gbdfl/person/v1"  # personal data: consent required
S_RECORDS = f"KZ/GOV/{ZAGS}/zags/records/v1"  # personal data: consent or legal basis
S_ECHO = f"KZ/GOV/{GBDFL}/gbdfl/echo/v1"  # the same adapter, no personal data
ECHO = "/govbus.v1.Diagnostics/Echo"
PURPOSE = "birth-registration"
INITIATOR = "operator-7"

ALICE = _iin(1, dt.date(1990, 5, 17), Sex.FEMALE)
BOB = _iin(2, dt.date(1985, 1, 2), Sex.MALE)
PHONES = {ALICE: "+77011234567", BOB: "+77017654321"}

LB_VALID = "lb-guardianship"
LB_EXPIRED = "lb-court-expired"
LB_OTHER = "lb-tax-loans"
LB_HIDDEN = "lb-investigation"
LAW = {
    LB_VALID: "Code on Marriage and Family art. 122",
    LB_EXPIRED: "Court order 2-11/2024",
    LB_OTHER: "Tax Code art. 24",
    LB_HIDDEN: "Criminal Procedure Code art. 199",
}

DAY_S = 86_400
DAY_MS = DAY_S * 1000
#: The providers' bound on the age of their copy of the revocation feed (the feed is
#: polled every second): short, so the kill scenario stays quick.
STALENESS_S = 4.0
EXPIRING_MS = 3000  # validity of the consent the matrix finds expired


def _now_ms() -> int:
    return int(time.time() * 1000)


def consent_id_of(raw: bytes) -> str:
    return artefact_of(raw).id


def artefact_of(raw: bytes) -> consent_pb2.ConsentArtefact:
    return consent_pb2.ConsentArtefact.FromString(
        consent_pb2.SignedConsent.FromString(raw).artefact
    )


# --- the bus ---------------------------------------------------------------------------


@dataclass
class World:
    bus: Bus
    adapter: str
    consents: dict[str, bytes] = field(default_factory=dict)
    foreign_ca: CertificateAuthority | None = None

    def id(self, name: str) -> str:
        return consent_id_of(self.consents[name])

    def consent_client(self) -> ConsentClient:
        return self.bus.consent_client()

    def citizen_signer(self, iin: str) -> tuple[KeySigner, bytes]:
        key = self.bus.citizen(iin)
        return key.signer(), certificate_der(key.certificate)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("consent-bus")
    bus = Bus(root)
    try:
        for member in (TSON, GBDFL, ZAGS):
            bus.member(f"KZ/GOV/{member}")
        for subsystem in (CLIENT, OTHER, f"KZ/GOV/{GBDFL}/gbdfl", f"KZ/GOV/{ZAGS}/zags"):
            bus.subsystem(subsystem)
        bus.server(SS_CONSUMER)
        provider_a, provider_b = bus.server(SS_A), bus.server(SS_B)
        bus.publish(S_PERSON, "govbus.v1.Diagnostics", DIAG_METHODS, [SS_A], personal_data=True)
        bus.publish(
            S_RECORDS,
            "govbus.v1.Diagnostics",
            DIAG_METHODS,
            [SS_B],
            personal_data=True,
            consent_policy=globalconf_pb2.CONSENT_OR_LEGAL_BASIS,
        )
        bus.publish(S_ECHO, "govbus.v1.Diagnostics", DIAG_METHODS, [SS_A])
        for client in (CLIENT, OTHER):
            for service in (S_PERSON, S_RECORDS, S_ECHO):
                bus.grant(client, service)
        now = time.time()
        bus.legal_basis(
            LB_VALID,
            CLIENT,
            S_RECORDS,
            LAW[LB_VALID],
            valid_from=now - DAY_S,
            valid_until=now + 30 * DAY_S,
        )
        bus.legal_basis(
            LB_EXPIRED,
            CLIENT,
            S_RECORDS,
            LAW[LB_EXPIRED],
            valid_from=now - 10 * DAY_S,
            valid_until=now - DAY_S,
        )
        bus.legal_basis(LB_OTHER, OTHER, S_RECORDS, LAW[LB_OTHER])
        bus.legal_basis(LB_HIDDEN, CLIENT, S_RECORDS, LAW[LB_HIDDEN], hidden_until=now + 30 * DAY_S)
        adapter = bus.start_diagnostics()
        provider_a.adapters[S_PERSON] = adapter
        provider_a.adapters[S_ECHO] = adapter
        provider_b.adapters[S_RECORDS] = adapter
        bus.write_conf()
        for server_id in (SS_CONSUMER, SS_A, SS_B):
            bus.start_server(server_id, consent_staleness_s=STALENESS_S)
        # The consent service reads this version (with the providers' addresses) at start.
        bus.write_conf()
        bus.start_consent_service()
        bus.wait_for_conf(bus.write_conf())  # now naming the consent service
        bus.wait_for_feed([SS_A, SS_B])
        world = World(
            bus, adapter, foreign_ca=CertificateAuthority.init(root / "foreign", PASSPHRASE)
        )
        world.consents = asyncio.run(_give_consents(world))
        # One consent revoked, and seen by both providers, before any test runs.
        asyncio.run(_revoke(world, world.id("revoked")))
        bus.wait_for_feed([SS_A, SS_B], after_ms=_now_ms())
        yield world
    finally:
        bus.stop()


async def _give(
    world: World,
    client: ConsentClient,
    subject: str,
    services: list[str],
    method: usage_pb2.ConsentMethod,
    *,
    expires_at_ms: int = 0,
    not_before_ms: int = 0,
) -> bytes:
    """A consent given through the real consent service, confirmed as a citizen would."""
    asked = await client.request_consent(
        subject=subject,
        grantee=CLIENT,
        scopes=[(service, []) for service in services],
        purpose_code=PURPOSE,
        purpose_text="to register the birth of a child",
        expires_at_ms=expires_at_ms or _now_ms() + 30 * DAY_MS,
        not_before_ms=not_before_ms,
        method=method,
    )
    if method == usage_pb2.CONSENT_METHOD_OTP:
        assert world.bus.consent is not None
        sent = [m for m in read_outbox(world.bus.consent.outbox) if m.to == PHONES[subject]]
        assert asked.otp_sent_to and sent, "no one-time code reached the citizen's phone"
        record = await client.confirm_otp(asked.request_id, sent[-1].code or "")
    else:
        signer, certificate = world.citizen_signer(subject)
        record = await client.confirm_eds(asked.request_id, signer, certificate)
    assert record.state == consent_pb2.CONSENT_STATE_ACTIVE
    return record.signed_consent


async def _give_consents(world: World) -> dict[str, bytes]:
    otp, eds = usage_pb2.CONSENT_METHOD_OTP, usage_pb2.CONSENT_METHOD_EDS
    operator = world.bus.consent_client(operator=True)
    client = world.consent_client()
    try:
        for iin, phone in PHONES.items():
            await operator.set_phone(iin, phone)
        return {
            # first: it must have expired by the time the matrix runs
            "expiring": await _give(
                world, client, ALICE, [S_PERSON], eds, expires_at_ms=_now_ms() + EXPIRING_MS
            ),
            "main": await _give(world, client, ALICE, [S_PERSON, S_RECORDS], otp),
            "eds": await _give(world, client, ALICE, [S_PERSON], eds),
            "bob": await _give(world, client, BOB, [S_PERSON, S_RECORDS], otp),
            "future": await _give(
                world,
                client,
                ALICE,
                [S_PERSON],
                eds,
                not_before_ms=_now_ms() + DAY_MS,
                expires_at_ms=_now_ms() + 2 * DAY_MS,
            ),
            "revoked": await _give(world, client, ALICE, [S_PERSON], eds),
            "unseen": await _give(world, client, ALICE, [S_PERSON], eds),
        }
    finally:
        await operator.close()
        await client.close()


async def _revoke(world: World, consent_id: str) -> None:
    client = world.consent_client()
    try:
        token = await client.login_eds(ALICE, *world.citizen_signer(ALICE))
        record = await client.revoke(consent_id, token=token, reason="changed my mind")
        assert record.state == consent_pb2.CONSENT_STATE_REVOKED
    finally:
        await client.close()


# --- exchanges ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One exchange as the consumer application makes it (raw `govbus-*` metadata)."""

    service: str = S_PERSON
    client: str = CLIENT
    subject: str = ALICE
    purpose: str = PURPOSE
    consent_id: str = ""
    artefact: bytes = b""
    legal_basis: str = ""


@dataclass(frozen=True)
class Outcome:
    request_id: str
    reply: diagnostics_pb2.EchoReply | None
    error: GovbusError | None


PAYLOAD = b"the person's record"
BODY = diagnostics_pb2.EchoRequest(payload=PAYLOAD).SerializeToString()


def exchange(world: World, call: Call) -> Outcome:
    """Echo through the consumer SS with a request id of our own (to find its records)."""
    request_id = uuid.uuid4().hex
    metadata: list[tuple[str, str | bytes]] = [
        (md.CLIENT, call.client),
        (md.SERVICE, call.service),
        (md.REQUEST_ID, request_id),
        (md.INITIATOR, INITIATOR),
    ]
    for key, value in (
        (md.SUBJECT, call.subject),
        (md.PURPOSE, call.purpose),
        (md.CONSENT, call.consent_id),
        (md.LEGAL_BASIS, call.legal_basis),
    ):
        if value:
            metadata.append((key, value))
    if call.artefact:
        metadata.append((md.CONSENT_ARTEFACT, call.artefact))

    async def run() -> Outcome:
        address = world.bus.servers[SS_CONSUMER].consumer_address
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                raw = await channel.unary_unary(ECHO)(BODY, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as exc:
                return Outcome(request_id, None, errors.from_rpc_error(exc))
        return Outcome(request_id, diagnostics_pb2.EchoReply.FromString(raw), None)

    return asyncio.run(run())


def adapter_calls(world: World) -> int:
    async def run() -> int:
        async with grpc.aio.insecure_channel(world.adapter) as channel:
            stats = await diagnostics_pb2_grpc.DiagnosticsStub(channel).Stats(
                diagnostics_pb2.StatsRequest(), timeout=5
            )
            return int(stats.calls)

    return asyncio.run(run())


def audit_records(world: World, server_id: str, request_id: str) -> list[audit_pb2.ExchangeRecord]:
    """A security server's audit records of one exchange, read beside the running server."""
    folder = world.bus.servers[server_id].folder
    store = open_store(f"sqlite:///{folder / 'state' / 'audit.db'}", create=False)
    try:
        found = store.find_by_request(request_id)
    finally:
        store.close()
    return [audit_pb2.ExchangeRecord.FromString(leaf) for _, leaf in found]


def provider_records(
    world: World, server_id: str, request_id: str
) -> list[audit_pb2.ExchangeRecord]:
    records = audit_records(world, server_id, request_id)
    assert all(r.side == audit_pb2.SIDE_PROVIDER for r in records)
    return records


def assert_refused(
    world: World,
    call: Call,
    expected: type[GovbusError],
    server_id: str,
    *,
    consent_id: str = "",
    legal_basis_id: str = "",
) -> Outcome:
    """The refusal the client gets, that nothing reached the adapter, and its log entry."""
    before = adapter_calls(world)
    outcome = exchange(world, call)
    error = outcome.error
    assert outcome.reply is None, f"expected {expected.code}, the exchange was served"
    assert isinstance(error, expected), error
    assert (error.code, error.origin) == (expected.code, Origin.PROVIDER_SS), error
    assert adapter_calls(world) == before, "the adapter was called on a refusal"
    records = provider_records(world, server_id, outcome.request_id)
    assert [r.phase for r in records] == [audit_pb2.PHASE_REFUSED], records
    record = records[0]
    assert record.error_code == expected.code and record.error_origin == "PROVIDER_SS"
    assert record.decision == audit_pb2.DECISION_DENIED
    assert record.justification == audit_pb2.JUSTIFICATION_NONE
    assert (record.consent_id, record.legal_basis_id) == (consent_id, legal_basis_id)
    assert (record.client, record.service, record.purpose) == (
        call.client,
        call.service,
        call.purpose,
    )
    # Who tried is logged with a refusal too: the citizen sees the official, not only the system.
    assert record.initiator == INITIATOR and record.decision_reason
    # The consumer SS holds the provider's signed refusal: an empty body, nothing else.
    consumer = audit_records(world, SS_CONSUMER, outcome.request_id)
    assert [(r.phase, r.error_code, r.body_size) for r in consumer] == [
        (audit_pb2.PHASE_REQUEST, "", len(BODY)),
        (audit_pb2.PHASE_RESPONSE, expected.code, 0),
    ]
    return outcome


def assert_allowed(
    world: World, call: Call, server_id: str, justification: audit_pb2.Justification
) -> list[audit_pb2.ExchangeRecord]:
    """The payload came back through the bus; the provider logged the justification."""
    before = adapter_calls(world)
    outcome = exchange(world, call)
    assert outcome.error is None, outcome.error
    assert outcome.reply is not None and outcome.reply.payload == PAYLOAD
    assert adapter_calls(world) == before + 1
    records = provider_records(world, server_id, outcome.request_id)
    assert [r.phase for r in records] == [audit_pb2.PHASE_REQUEST, audit_pb2.PHASE_RESPONSE]
    for record in records:
        assert record.decision == audit_pb2.DECISION_ALLOWED and not record.error_code
        assert record.justification == justification
    return records


# --- allowed exchanges -----------------------------------------------------------------


def test_allowed_exchanges_carry_their_justification(world: World) -> None:
    """Through govbus.client, as a consumer application calls: `consent=` with
    `consent_artefact=`, or `legal_basis=`."""
    main, eds = world.consents["main"], world.consents["eds"]
    cases = [
        (S_PERSON, SS_A, {"consent": world.id("main"), "consent_artefact": main}),
        (S_RECORDS, SS_B, {"consent": world.id("main"), "consent_artefact": main}),
        (S_PERSON, SS_A, {"consent": world.id("eds"), "consent_artefact": eds}),
        (S_RECORDS, SS_B, {"legal_basis": LB_VALID}),
        (S_RECORDS, SS_B, {"legal_basis": LB_HIDDEN}),
    ]

    async def call(service: str, cited: dict[str, str | bytes]) -> diagnostics_pb2.EchoReply:
        address = world.bus.servers[SS_CONSUMER].consumer_address
        async with Client(address, CLIENT, initiator=INITIATOR) as client:
            stub = client.stub(
                diagnostics_pb2_grpc.DiagnosticsStub,
                service,
                subject=ALICE,
                purpose=PURPOSE,
                **cited,  # type: ignore[arg-type]
            )
            reply: diagnostics_pb2.EchoReply = await stub.Echo(
                diagnostics_pb2.EchoRequest(payload=PAYLOAD)
            )
            return reply

    hidden_until = {b.id: b.hidden_until for b in world.bus.conf.legal_bases}
    for service, server_id, cited in cases:
        before = adapter_calls(world)
        reply = asyncio.run(call(service, cited))
        assert reply.payload == PAYLOAD and adapter_calls(world) == before + 1
        seen = dict(line.split("=", 1) for line in reply.metadata)
        assert seen[md.SUBJECT] == ALICE and seen[md.CLIENT] == CLIENT
        records = provider_records(world, server_id, seen[md.REQUEST_ID])
        assert [r.phase for r in records] == [audit_pb2.PHASE_REQUEST, audit_pb2.PHASE_RESPONSE]
        for record in records:
            assert record.decision == audit_pb2.DECISION_ALLOWED
            if "consent" in cited:
                assert seen[md.CONSENT] == cited["consent"]
                assert record.justification == audit_pb2.JUSTIFICATION_CONSENT
                assert (record.consent_id, record.legal_basis_id) == (cited["consent"], "")
                assert (record.law_reference, record.hidden_until_ms) == ("", 0)
            else:
                basis = str(cited["legal_basis"])
                assert seen[md.LEGAL_BASIS] == basis
                assert record.justification == audit_pb2.JUSTIFICATION_LEGAL_BASIS
                assert (record.consent_id, record.legal_basis_id) == ("", basis)
                assert record.law_reference == LAW[basis]
                hidden = hidden_until[basis]
                expected = hidden.seconds * 1000 + hidden.nanos // 1_000_000
                assert record.hidden_until_ms == expected
                assert (record.hidden_until_ms > _now_ms()) == (basis == LB_HIDDEN)
    # A service without personal data needs neither, and says so in the log.
    records = assert_allowed(
        world, Call(service=S_ECHO), SS_A, audit_pb2.JUSTIFICATION_NOT_PERSONAL
    )
    assert {(r.consent_id, r.legal_basis_id) for r in records} == {("", "")}


# --- the decision matrix -----------------------------------------------------------------


def _altered(raw: bytes) -> bytes:
    """The artefact's bytes changed after signing (here: a year longer)."""
    signed = consent_pb2.SignedConsent.FromString(raw)
    artefact = consent_pb2.ConsentArtefact.FromString(signed.artefact)
    artefact.expires_at_ms += 365 * DAY_MS
    signed.artefact = artefact.SerializeToString(deterministic=True)
    return signed.SerializeToString(deterministic=True)


def _forged(raw: bytes) -> bytes:
    """Altered terms signed by a key of the forger's, under the consent service's
    certificate (and the key id it names)."""
    signed = consent_pb2.SignedConsent.FromString(raw)
    artefact = consent_pb2.ConsentArtefact.FromString(signed.artefact)
    artefact.grantee = OTHER
    signed.artefact = artefact.SerializeToString(deterministic=True)
    forger = KeySigner(generate_key(), cert_fingerprint(signed.signer_certificate))
    signed.signature.CopyFrom(forger.sign(signed.artefact))
    return signed.SerializeToString(deterministic=True)


def _foreign(world: World, raw: bytes) -> bytes:
    """The same terms signed by a 'consent service' of a CA the bus does not trust."""
    assert world.foreign_ca is not None
    key = world.foreign_ca.issue_key(Role.CONSENT, "consent-service")
    signed = consent_pb2.SignedConsent.FromString(raw)
    signed.signature.CopyFrom(key.signer().sign(signed.artefact))
    signed.signer_certificate = certificate_der(key.certificate)
    return signed.SerializeToString(deterministic=True)


def _expired(world: World) -> bytes:
    raw = world.consents["expiring"]
    left_ms = artefact_of(raw).expires_at_ms - _now_ms()
    if left_ms >= 0:  # waiting on the clock, not on a server: the artefact says when
        time.sleep(left_ms / 1000 + 0.01)
    return raw


@dataclass(frozen=True)
class Case:
    call: Callable[[World], Call]
    error: type[GovbusError]
    server: str = SS_A
    #: (consent id, legal basis id) the refusal record must name
    cites: Callable[[World], tuple[str, str]] = lambda w: ("", "")


def _consent(name: str, **changes: object) -> Callable[[World], Call]:
    def build(world: World) -> Call:
        fields: dict[str, object] = {
            "consent_id": world.id(name),
            "artefact": world.consents[name],
        }
        fields.update(changes)
        return Call(**fields)  # type: ignore[arg-type]

    return build


def _cites(name: str) -> Callable[[World], tuple[str, str]]:
    return lambda world: (world.id(name), "")


#: The refusals of the decision matrix. The allowed rows are
#: test_allowed_exchanges_carry_their_justification; "revoked, before the feed
#: updates" (still allowed: a revocation takes up to the staleness bound) is shown in
#: test_consent_service_killed, where no poll can reach the feed in between.
MATRIX: dict[str, Case] = {
    "expired": Case(
        lambda w: Call(consent_id=w.id("expiring"), artefact=_expired(w)),
        errors.ConsentExpired,
        cites=_cites("expiring"),
    ),
    "not-yet-valid": Case(_consent("future"), errors.ConsentNotYetValid, cites=_cites("future")),
    "revoked-after-feed-update": Case(
        _consent("revoked"), errors.ConsentRevoked, cites=_cites("revoked")
    ),
    "wrong-subject": Case(_consent("main", subject=BOB), errors.ConsentScope, cites=_cites("main")),
    "no-subject": Case(_consent("main", subject=""), errors.ConsentScope, cites=_cites("main")),
    "wrong-grantee": Case(
        _consent("main", client=OTHER), errors.ConsentScope, cites=_cites("main")
    ),
    "service-out-of-scope": Case(
        _consent("eds", service=S_RECORDS), errors.ConsentScope, SS_B, _cites("eds")
    ),
    "purpose-out-of-scope": Case(
        _consent("main", purpose="tax-audit"), errors.ConsentScope, cites=_cites("main")
    ),
    "altered-artefact": Case(
        lambda w: Call(consent_id=w.id("main"), artefact=_altered(w.consents["main"])),
        errors.SignatureInvalid,
        cites=_cites("main"),
    ),
    "forged-signature": Case(
        lambda w: Call(consent_id=w.id("main"), artefact=_forged(w.consents["main"])),
        errors.SignatureInvalid,
        cites=_cites("main"),
    ),
    "signed-by-untrusted-ca": Case(
        lambda w: Call(consent_id=w.id("main"), artefact=_foreign(w, w.consents["main"])),
        errors.CertificateInvalid,
        cites=_cites("main"),
    ),
    "garbage-artefact": Case(
        lambda w: Call(artefact=b"\x0a\x03not a consent"), errors.ConsentInvalid
    ),
    "another-iin-replayed": Case(_consent("bob"), errors.ConsentScope, cites=_cites("bob")),
    "another-iin-under-this-id": Case(
        lambda w: Call(consent_id=w.id("main"), artefact=w.consents["bob"]),
        errors.ConsentInvalid,
        cites=_cites("bob"),
    ),
    "missing-consent": Case(lambda w: Call(), errors.ConsentRequired),
    "consent-id-without-artefact": Case(
        lambda w: Call(consent_id=w.id("main")), errors.ConsentRequired, cites=_cites("main")
    ),
    "missing-consent-or-legal-basis": Case(
        lambda w: Call(service=S_RECORDS), errors.ConsentRequired, SS_B
    ),
    "legal-basis-expired": Case(
        lambda w: Call(service=S_RECORDS, legal_basis=LB_EXPIRED),
        errors.LegalBasisInvalid,
        SS_B,
        lambda w: ("", LB_EXPIRED),
    ),
    "legal-basis-of-another-consumer": Case(
        lambda w: Call(service=S_RECORDS, legal_basis=LB_OTHER),
        errors.LegalBasisInvalid,
        SS_B,
        lambda w: ("", LB_OTHER),
    ),
    "legal-basis-not-registered": Case(
        lambda w: Call(service=S_RECORDS, legal_basis="lb-made-up"),
        errors.LegalBasisInvalid,
        SS_B,
        lambda w: ("", "lb-made-up"),
    ),
    "legal-basis-where-only-consent-counts": Case(
        lambda w: Call(legal_basis=LB_VALID),
        errors.LegalBasisInvalid,
        cites=lambda w: ("", LB_VALID),
    ),
    "consent-and-legal-basis-together": Case(
        _consent("main", service=S_RECORDS, legal_basis=LB_VALID),
        errors.InvalidRequest,
        SS_B,
        lambda w: (w.id("main"), LB_VALID),
    ),
}


@pytest.mark.parametrize("name", list(MATRIX))
def test_decision_matrix_refusals(world: World, name: str) -> None:
    case = MATRIX[name]
    consent_id, legal_basis_id = case.cites(world)
    assert_refused(
        world,
        case.call(world),
        case.error,
        case.server,
        consent_id=consent_id,
        legal_basis_id=legal_basis_id,
    )


# --- who accessed my data ----------------------------------------------------------------


def test_who_accessed_my_data(world: World, tmp_path: Path) -> None:
    """Alice logs in (EDS, then a one-time code through the CLI) and sees every exchange
    about her on both provider security servers, except one still hidden."""
    started = _now_ms()
    mine = {
        "person-consent": (exchange(world, _consent("main")(world)), SS_A),
        "records-consent": (exchange(world, _consent("main", service=S_RECORDS)(world)), SS_B),
        "records-legal": (exchange(world, Call(service=S_RECORDS, legal_basis=LB_VALID)), SS_B),
        "refused": (exchange(world, _consent("future")(world)), SS_A),
    }
    hidden = exchange(world, Call(service=S_RECORDS, legal_basis=LB_HIDDEN))
    bobs = exchange(
        world, Call(subject=BOB, consent_id=world.id("bob"), artefact=world.consents["bob"])
    )
    assert all(o.error is None for key, (o, _) in mine.items() if key != "refused")
    assert isinstance(mine["refused"][0].error, errors.ConsentNotYetValid)
    assert hidden.error is None and bobs.error is None
    # The hidden exchange is in the provider's log, only not shown to her yet.
    (logged, _) = provider_records(world, SS_B, hidden.request_id)
    assert logged.hidden_until_ms > _now_ms() and logged.legal_basis_id == LB_HIDDEN
    finished = _now_ms()

    async def eds_usage() -> usage_pb2.FindMyUsageResponse:
        client = world.consent_client()
        try:
            token = await client.login_eds(ALICE, *world.citizen_signer(ALICE))
            return await client.find_my_usage(token)
        finally:
            await client.close()

    answer = asyncio.run(eds_usage())
    assert {(s.server, s.answered) for s in answer.servers} == {(SS_A, True), (SS_B, True)}
    by_request = {entry.request_id: entry for entry in answer.entries}
    assert len(by_request) == len(answer.entries)  # one entry per exchange
    for key, (outcome, server_id) in mine.items():
        entry = by_request[outcome.request_id]
        assert entry.server == server_id, key
        assert (entry.consumer, entry.purpose, entry.initiator) == (CLIENT, PURPOSE, INITIATOR)
        assert started <= entry.time_ms <= finished
        assert entry.method == ECHO
    person = by_request[mine["person-consent"][0].request_id]
    assert (person.service, person.consent_id) == (S_PERSON, world.id("main"))
    assert person.justification == audit_pb2.JUSTIFICATION_CONSENT
    records = by_request[mine["records-consent"][0].request_id]
    assert (records.service, records.consent_id) == (S_RECORDS, world.id("main"))
    legal = by_request[mine["records-legal"][0].request_id]
    assert (legal.service, legal.legal_basis_id, legal.law_reference) == (
        S_RECORDS,
        LB_VALID,
        LAW[LB_VALID],
    )
    assert legal.justification == audit_pb2.JUSTIFICATION_LEGAL_BASIS
    refused = by_request[mine["refused"][0].request_id]
    assert (refused.decision, refused.error_code) == (
        audit_pb2.DECISION_DENIED,
        "CONSENT_NOT_YET_VALID",
    )
    # Still hidden: neither this exchange nor any other under that basis; Bob's own exchange
    # is not about her.
    assert hidden.request_id not in by_request and bobs.request_id not in by_request
    assert LB_HIDDEN not in {entry.legal_basis_id for entry in answer.entries}
    # Bob's consent shows up only where someone tried it on her data (the matrix's
    # replay), refused.
    assert all(
        entry.decision == audit_pb2.DECISION_DENIED
        for entry in answer.entries
        if entry.consent_id == world.id("bob")
    )
    assert {entry.server for entry in answer.entries} == {SS_A, SS_B}
    assert answer.entries == sorted(
        answer.entries, key=lambda e: (e.time_ms, e.server, e.request_id)
    )

    # The same through the CLI, logged in by a one-time code sent to her phone.
    assert world.bus.consent is not None
    address, ca = world.bus.consent.address, str(world.bus.ca.directory / "ca.cert.pem")
    started_login = json.loads(
        run_cli(
            "consent", "login", "--address", address, "--ca", ca, "--iin", ALICE, "--json"
        ).stdout
    )
    assert started_login["otp_sent_to"].endswith(PHONES[ALICE][-4:])
    code = latest_code(world.bus.consent.outbox, started_login["challenge_id"])
    token_file = tmp_path / "alice.token"
    run_cli(
        "consent",
        "login",
        "--address",
        address,
        "--ca",
        ca,
        "--challenge",
        started_login["challenge_id"],
        "--code",
        code,
        "--token-out",
        str(token_file),
    )
    usage = ("consent", "usage", "--address", address, "--ca", ca, "--token", str(token_file))
    shown = json_format.Parse(run_cli(*usage, "--json").stdout, usage_pb2.FindMyUsageResponse())
    shown_ids = {entry.request_id for entry in shown.entries}
    assert {o.request_id for o, _ in mine.values()} <= shown_ids
    assert hidden.request_id not in shown_ids and bobs.request_id not in shown_ids
    assert {(s.server, s.answered) for s in shown.servers} == {(SS_A, True), (SS_B, True)}
    table = run_cli(*usage, env={"COLUMNS": "400"}).stdout
    for text in (CLIENT, S_PERSON, S_RECORDS, world.id("main"), LAW[LB_VALID], INITIATOR):
        assert text in table, text
    assert "refused (CONSENT_NOT_YET_VALID)" in table
    assert LAW[LB_HIDDEN] not in table and "did not answer" not in table


# --- the consent service killed ----------------------------------------------------------


def _wait_for(condition: Callable[[], bool], what: str, limit_s: float) -> None:
    """Poll an observable condition with a bound (never a guessed sleep)."""
    end = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        time.sleep(0.05)


def test_consent_service_killed(world: World) -> None:
    bus = world.bus
    assert bus.consent is not None and bus.consent.process is not None
    first = bus.consent.process
    provider_a = bus.servers[SS_A].process
    assert provider_a is not None
    valid, unseen = _consent("main")(world), _consent("unseen")(world)
    seen = _consent("revoked")(world)  # revoked, and seen by every provider, before the kill
    assert_allowed(world, unseen, SS_A, audit_pb2.JUSTIFICATION_CONSENT)

    async def revoke_then_kill() -> None:
        """Alice revokes `unseen`, and the consent service is killed at once.

        So that no feed poll of provider A can fall between the two, A is paused
        (SIGSTOP) right after one of its polls (the next is a second away) and
        resumed after the kill: it never sees this revocation from the service.
        """
        client = world.consent_client()
        try:
            token = await client.login_eds(ALICE, *world.citizen_signer(ALICE))
            end = time.monotonic() + 10
            while not 0 <= (await bus.status_async(SS_A)).consent_feed_age_ms < 300:
                assert time.monotonic() < end, "provider A's feed is not being polled"
                await asyncio.sleep(0.02)
            provider_a.signal(signal.SIGSTOP)
            try:
                record = await client.revoke(world.id("unseen"), token=token)
                assert record.state == consent_pb2.CONSENT_STATE_REVOKED
                bus.kill_consent_service()
            finally:
                provider_a.signal(signal.SIGCONT)
        finally:
            await client.close()

    asyncio.run(revoke_then_kill())
    assert first.proc is not None and first.proc.returncode == -signal.SIGKILL

    # Within the bound: decided locally. The revocation seen before stays enforced; the
    # one the provider never saw is not known to it yet (a revocation takes up to the
    # bound to be enforced), so that consent still passes — and is logged as such.
    assert_allowed(world, valid, SS_A, audit_pb2.JUSTIFICATION_CONSENT)
    records = assert_allowed(world, unseen, SS_A, audit_pb2.JUSTIFICATION_CONSENT)
    assert {r.consent_id for r in records} == {world.id("unseen")}
    assert_refused(world, seen, errors.ConsentRevoked, SS_A, consent_id=world.id("revoked"))

    # The bound passes with the service still dead: every consent is refused (fail closed).
    bound_ms = int(STALENESS_S * 1000)
    _wait_for(
        lambda: bus.status(SS_A).consent_feed_age_ms > bound_ms,
        "provider A's feed to pass the staleness bound",
        STALENESS_S + 15,
    )
    for call, name in ((unseen, "unseen"), (valid, "main")):
        assert_refused(world, call, errors.ConsentStatusStale, SS_A, consent_id=world.id(name))
    assert_refused(world, seen, errors.ConsentRevoked, SS_A, consent_id=world.id("revoked"))
    # A legal basis does not depend on the consent feed.
    assert_allowed(
        world,
        Call(service=S_RECORDS, legal_basis=LB_VALID),
        SS_B,
        audit_pb2.JUSTIFICATION_LEGAL_BASIS,
    )

    # The service comes back on the same state and port; the providers catch up.
    restarted_at = _now_ms()
    port = bus.consent.port
    bus.start_consent_service()
    assert bus.consent.port == port and bus.consent.process is not first
    bus.wait_for_feed([SS_A, SS_B], after_ms=restarted_at, timeout=40)
    assert_refused(world, unseen, errors.ConsentRevoked, SS_A, consent_id=world.id("unseen"))
    assert_allowed(world, valid, SS_A, audit_pb2.JUSTIFICATION_CONSENT)
