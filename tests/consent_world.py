"""A small bus for the consent tests: PKI, identities, a signed global configuration,
signed artefacts and an in-process consent service on real TLS ports.

Everything here is real: keys and certificates from a real CA, configurations
signed and verified, gRPC over TLS on loopback. Only the time is chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2

from consent.artefact import sign_consent
from consent.client import ConsentClient, consent_channel
from consent.service import ConsentGrpcServicer, ConsentService, ConsentSettings
from consent.sms import OutboxSmsGateway
from consent.store import SqlConsentStore
from consent.trust import ConsentServiceKey
from govbus.crypto.keys import private_key_pem, save_private_key
from govbus.crypto.pki import (
    CertificateAuthority,
    IssuedKey,
    Role,
    TrustAnchor,
    certificate_der,
    certificate_pem,
)
from govbus.globalconf import GlobalConfView, sign_global_conf, verify_global_conf
from govbus.ids import Bin, Iin, Sex
from govbus.pb.govbus.v1 import consent_pb2, consent_pb2_grpc, globalconf_pb2, usage_pb2
from govbus.serving import DEFAULT_OPTIONS
from tests.conftest import PASSPHRASE


async def until(condition: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    """Wait for a condition the test can observe (never a guessed sleep)."""
    end = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def make_iin(serial: int, birth: dt.date = dt.date(1990, 5, 17), sex: Sex = Sex.FEMALE) -> str:
    while True:
        built = Iin.build(birth, sex, serial)
        if built is not None:
            return built.value
        serial += 1


def make_bin(serial: int) -> str:
    while True:
        built = Bin.build(2004, 3, serial)
        if built is not None:
            return built.value
        serial += 1


GBDFL = make_bin(101)
ZAGS = make_bin(202)
TSON = make_bin(303)
BANK = make_bin(404)

CLIENT = f"KZ/GOV/{TSON}/tson"  # the ЦОН operator application
OTHER_CLIENT = f"KZ/GOV/{BANK}/loans"
S_PERSON = f"KZ/GOV/{GBDFL}/gbdfl/person/v1"  # consent required, fails closed
S_BIRTH = f"KZ/GOV/{ZAGS}/zags/birth/v1"  # consent required, fails open on a stale feed
S_CASES = f"KZ/GOV/{GBDFL}/gbdfl/cases/v1"  # consent or legal basis
S_PUBLIC = f"KZ/GOV/{GBDFL}/gbdfl/addresses/v1"  # no personal data
PURPOSE = "birth-registration"
SERVERS = (f"KZ/GOV/{GBDFL}/ss1", f"KZ/GOV/{ZAGS}/ss1")

ALICE = make_iin(1)
BOB = make_iin(2, dt.date(1985, 1, 2), Sex.MALE)

DAY_MS = 86_400_000


def _ts(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


@dataclass
class World:
    ca: CertificateAuthority
    consent_key: IssuedKey
    tls_key: IssuedKey
    registry_key: IssuedKey
    operator_key: IssuedKey
    citizens: dict[str, IssuedKey] = field(default_factory=dict)
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @classmethod
    def create(cls, directory: Path) -> World:
        ca = CertificateAuthority.init(directory / "pki", PASSPHRASE)
        world = cls(
            ca=ca,
            consent_key=ca.issue_key(Role.CONSENT, "consent-service"),
            tls_key=ca.issue_key(Role.SERVER, "consent-service", hosts=["127.0.0.1", "localhost"]),
            registry_key=ca.issue_key(Role.REGISTRY, "registry"),
            operator_key=ca.issue_key(Role.OPERATOR, "operator-001"),
        )
        for iin in (ALICE, BOB):
            world.citizens[iin] = ca.issue_key(Role.CITIZEN, iin)
        return world

    @property
    def anchor(self) -> TrustAnchor:
        return TrustAnchor([self.ca.certificate])

    @property
    def service_key(self) -> ConsentServiceKey:
        return ConsentServiceKey.of(
            self.consent_key.signer(), certificate_der(self.consent_key.certificate), self.anchor
        )

    @property
    def ca_pem(self) -> bytes:
        return certificate_pem(self.ca.certificate)

    # --- global configuration --------------------------------------------------------

    def conf(
        self, *, version: int = 1, revoked: Sequence[int] = (), servers: Sequence[str] = ()
    ) -> globalconf_pb2.GlobalConf:
        now = self.now_ms
        conf = globalconf_pb2.GlobalConf(version=version, instance="KZ")
        conf.generated_at.CopyFrom(_ts(now))
        conf.expires_at.CopyFrom(_ts(now + 3600_000))
        for sub in (CLIENT, OTHER_CLIENT):
            conf.subsystems.add(id=sub)
        served_by = list(servers) or list(SERVERS)
        conf.services.add(
            id=S_PERSON,
            personal_data=True,
            consent_policy=globalconf_pb2.CONSENT_REQUIRED,
            servers=served_by[:1],
            methods=[
                globalconf_pb2.Method(
                    name="/kz.gov.gbdfl.v1.PersonRegistry/Get",
                    fields=["name", "birth_date", "address"],
                )
            ],
        )
        conf.services.add(
            id=S_BIRTH,
            personal_data=True,
            consent_policy=globalconf_pb2.CONSENT_REQUIRED,
            stale_feed_mode=globalconf_pb2.FAIL_OPEN,
            servers=served_by[1:2] or served_by[:1],
        )
        conf.services.add(
            id=S_CASES,
            personal_data=True,
            consent_policy=globalconf_pb2.CONSENT_OR_LEGAL_BASIS,
            servers=served_by[:1],
        )
        conf.services.add(
            id=S_PUBLIC,
            personal_data=False,
            consent_policy=globalconf_pb2.CONSENT_NOT_REQUIRED,
            servers=served_by[:1],
        )
        for index, server in enumerate(served_by):
            conf.security_servers.add(id=server, address=f"127.0.0.1:{1 + index}")
        conf.legal_bases.add(
            id="lb-valid",
            client=CLIENT,
            service=S_CASES,
            law_reference="Criminal Procedure Code art. 199",
            valid_from=_ts(now - DAY_MS),
            valid_until=_ts(now + DAY_MS),
            hidden_until=_ts(now + 30 * DAY_MS),
        )
        conf.legal_bases.add(
            id="lb-expired",
            client=CLIENT,
            service=S_CASES,
            law_reference="Court order 2-11/2024",
            valid_from=_ts(now - 10 * DAY_MS),
            valid_until=_ts(now - DAY_MS),
        )
        conf.legal_bases.add(
            id="lb-future",
            client=CLIENT,
            service=S_CASES,
            law_reference="Court order 2-12/2099",
            valid_from=_ts(now + DAY_MS),
        )
        conf.legal_bases.add(
            id="lb-other", client=OTHER_CLIENT, service=S_CASES, law_reference="Tax Code art. 1"
        )
        conf.legal_bases.add(
            id="lb-person", client=CLIENT, service=S_PERSON, law_reference="Law on police"
        )
        for serial in revoked:
            conf.revoked.add(serial=serial.to_bytes((serial.bit_length() + 7) // 8, "big"))
        return conf

    def view(self, conf: globalconf_pb2.GlobalConf | None = None) -> GlobalConfView:
        conf = conf if conf is not None else self.conf()
        raw = sign_global_conf(
            conf, self.registry_key.signer(), certificate_der(self.registry_key.certificate)
        )
        return verify_global_conf(raw, [self.ca.certificate], now=self.now_ms / 1000)

    # --- artefacts -------------------------------------------------------------------

    def artefact(
        self,
        *,
        consent_id: str = "c-0001",
        subject: str = ALICE,
        grantee: str = CLIENT,
        services: Sequence[str] = (S_PERSON, S_BIRTH, S_CASES),
        fields: Sequence[str] = (),
        purpose: str = PURPOSE,
        not_before_ms: int | None = None,
        expires_at_ms: int | None = None,
        method: usage_pb2.ConsentMethod = usage_pb2.CONSENT_METHOD_OTP,
    ) -> consent_pb2.ConsentArtefact:
        now = self.now_ms
        return consent_pb2.ConsentArtefact(
            id=consent_id,
            subject=subject,
            grantee=grantee,
            scopes=[consent_pb2.ServiceScope(service=s, fields=list(fields)) for s in services],
            purpose_code=purpose,
            purpose_text="to register the birth of a child",
            mode=consent_pb2.CONSENT_MODE_VIEW,
            not_before_ms=now - 60_000 if not_before_ms is None else not_before_ms,
            expires_at_ms=now + 30 * DAY_MS if expires_at_ms is None else expires_at_ms,
            evidence=consent_pb2.ConsentEvidence(method=method),
            issued_at_ms=now - 60_000,
            issuer="consent-service",
        )

    def signed(
        self, artefact: consent_pb2.ConsentArtefact | None = None, key: IssuedKey | None = None
    ) -> bytes:
        artefact = artefact if artefact is not None else self.artefact()
        signing = key or self.consent_key
        service_key = ConsentServiceKey(
            signing.signer(), certificate_der(signing.certificate), "consent-service"
        )
        return sign_consent(artefact.SerializeToString(deterministic=True), service_key)

    # --- key files for processes ---------------------------------------------------------

    def write_files(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {"ca": directory / "ca.cert.pem"}
        files["ca"].write_bytes(self.ca_pem)
        for name, issued in (
            ("consent", self.consent_key),
            ("tls", self.tls_key),
            ("operator", self.operator_key),
            *((f"citizen-{iin}", key) for iin, key in self.citizens.items()),
        ):
            save_private_key(directory / f"{name}.key.pem", issued.key, PASSPHRASE)
            (directory / f"{name}.cert.pem").write_bytes(certificate_pem(issued.certificate))
            files[f"{name}.key"] = directory / f"{name}.key.pem"
            files[f"{name}.cert"] = directory / f"{name}.cert.pem"
        return files


@dataclass
class RunningService:
    service: ConsentService
    store: SqlConsentStore
    address: str
    operator_address: str
    outbox: Path
    world: World

    def client(self) -> ConsentClient:
        return ConsentClient(consent_channel(self.address, self.world.ca_pem))

    def operator_client(self, key: IssuedKey | None = None) -> ConsentClient:
        issued = key or self.world.operator_key
        return ConsentClient(
            consent_channel(
                self.operator_address,
                self.world.ca_pem,
                client_key_pem=private_key_pem(issued.key),
                client_cert_pem=certificate_pem(issued.certificate),
            )
        )


@contextlib.asynccontextmanager
async def running_service(
    world: World,
    directory: Path,
    *,
    pg_dsn: str | None = None,
    settings: ConsentSettings | None = None,
    globalconf: GlobalConfView | None = None,
    channel_factory: object = None,
) -> AsyncIterator[RunningService]:
    """The consent service in this process, on real TLS ports (public and operator)."""
    store = await SqlConsentStore.open(sqlite_path=directory / "consent.db", pg_dsn=pg_dsn)
    outbox = directory / "outbox.jsonl"
    service = ConsentService(
        store,
        world.service_key,
        lambda: globalconf.anchor if globalconf is not None else world.anchor,
        OutboxSmsGateway(outbox),
        os.urandom(32),
        settings=settings,
        globalconf=lambda: globalconf,
        channel_factory=channel_factory,  # type: ignore[arg-type]
    )
    server = grpc.aio.server(options=DEFAULT_OPTIONS)
    consent_pb2_grpc.add_ConsentServiceServicer_to_server(ConsentGrpcServicer(service), server)
    pair = [(private_key_pem(world.tls_key.key), certificate_pem(world.tls_key.certificate))]
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(pair))
    operator_port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(pair, root_certificates=world.ca_pem, require_client_auth=True),
    )
    await server.start()
    try:
        yield RunningService(
            service, store, f"127.0.0.1:{port}", f"127.0.0.1:{operator_port}", outbox, world
        )
    finally:
        await server.stop(None)
        await store.close()
