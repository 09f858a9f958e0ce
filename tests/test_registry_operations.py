"""Registry operations: rights, validation, audit trail and the global configuration they
produce — the same suite on SQLite and on the real PostgreSQL.

TLS and certificate-based identification are tested through real processes in
test_registry_admin.py; here callers are built from the certificate names the
admin port would read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from govbus.crypto.keys import Algorithm, generate_key
from govbus.crypto.pki import CertificateAuthority, Role, certificate_der, certificate_pem
from govbus.errors import (
    AccessDenied,
    AlreadyExists,
    CertificateInvalid,
    FailedPrecondition,
    GovbusError,
    InvalidIdentifier,
    InvalidRequest,
    NotFound,
)
from govbus.globalconf import verify_global_conf
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.bootstrap import make_csr
from registry.confbuild import ConfSettings
from registry.operations import RegistryOperations, ServiceSettings
from registry.publisher import ConfPublisher
from registry.rules import Caller
from registry.store import SqlRegistryStore, open_store
from registry.store_postgres import PostgresRegistryStore
from tests.test_registry_descriptors import PERSON_SERVICE, person_descriptor_set

GBDFL = "KZ/GOV/040340123459"
TSON = "KZ/GOV/990140000017"
PERSONS = f"{GBDFL}/gbdfl/person/v1"
CLIENT = f"{TSON}/con"
SS1 = f"{GBDFL}/ss1"

OPERATOR = Caller.from_certificate_name("operator", 1)
GBDFL_ADMIN = Caller.from_certificate_name(GBDFL, 2)
TSON_ADMIN = Caller.from_certificate_name(TSON, 3)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlRegistryStore]:
    if request.param == "sqlite":
        opened = open_store(tmp_path / "registry.db")
        yield opened
        opened.close()
        return
    dsn = request.getfixturevalue("pg_dsn")
    pg = PostgresRegistryStore(dsn, schema=f"registry_ops_{uuid.uuid4().hex[:10]}")
    yield pg
    pg.drop_schema()
    pg.close()


@pytest.fixture
def ops(store: SqlRegistryStore, ca: CertificateAuthority) -> RegistryOperations:
    return RegistryOperations(store, ca)


@pytest.fixture(scope="module")
def persons(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return person_descriptor_set(tmp_path_factory.mktemp("proto"))


def _csrs() -> tuple[bytes, bytes]:
    return make_csr(generate_key(), "tls"), make_csr(generate_key(Algorithm.ED25519), "sign")


def _spec(persons: bytes, **overrides: object) -> ServiceSettings:
    values: dict[str, object] = {
        "service_id": PERSONS,
        "grpc_service": PERSON_SERVICE,
        "descriptor_set": persons,
        "servers": [SS1],
        "personal_data": True,
        "idempotent_methods": ["GetPerson"],
        "fields": {"GetPerson": ["full_name"]},
    }
    values.update(overrides)
    return ServiceSettings(**values)  # type: ignore[arg-type]


def _provider(ops: RegistryOperations, persons: bytes) -> None:
    """GBDFL with a subsystem, a server and the persons service; TSON with a client."""
    ops.add_member(OPERATOR, GBDFL, "ГБД ФЛ")
    ops.add_member(OPERATOR, TSON, "ЦОН")
    ops.add_subsystem(GBDFL_ADMIN, f"{GBDFL}/gbdfl", "Person registry")
    ops.add_subsystem(TSON_ADMIN, CLIENT, "Operator application")
    ops.register_server(GBDFL_ADMIN, SS1, "ss1.gbdfl.kz:7001", *_csrs())
    ops.publish_service(GBDFL_ADMIN, _spec(persons))


def test_a_provider_is_set_up_and_every_step_is_in_the_audit_trail(
    ops: RegistryOperations, persons: bytes, ca: CertificateAuthority
) -> None:
    _provider(ops, persons)
    ops.grant_access(GBDFL_ADMIN, PERSONS, CLIENT)
    basis, _ = ops.add_legal_basis(
        GBDFL_ADMIN,
        globalconf_pb2.LegalBasis(
            client=CLIENT, service=PERSONS, law_reference="Закон о персональных данных, ст. 9"
        ),
    )
    assert basis.id.startswith("lb-")
    with ops.store.read() as r:
        server = r.server(SS1)
        service = r.service(PERSONS)
        signing_der = r.server_signing_certificate(SS1)
    assert server is not None and service is not None
    tls = x509.load_der_x509_certificate(server.tls_certificate)
    identity = ca.trust_anchor().validate(tls, role=Role.SERVER)
    assert identity.name == SS1
    hosts = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ss1.gbdfl.kz" in hosts.get_values_for_type(x509.DNSName)
    assert ca.trust_anchor().validate(signing_der, role=Role.SIGNING).name == GBDFL
    assert server.signing_certificate == signing_der  # carried in the configuration too
    assert service.consent_policy == globalconf_pb2.CONSENT_REQUIRED
    assert service.stale_feed_mode == globalconf_pb2.FAIL_CLOSED
    assert (service.default_deadline_ms, service.max_message_bytes) == (5000, 4 * 1024 * 1024)
    trail = ops.audit_trail(OPERATOR, 100, 0)
    assert [(e.actor, e.action) for e in reversed(trail)] == [
        ("operator", "member.add"),
        ("operator", "member.add"),
        (GBDFL, "subsystem.add"),
        (TSON, "subsystem.add"),
        (GBDFL, "server.register"),
        (GBDFL, "service.publish"),
        (GBDFL, "access.grant"),
        (GBDFL, "legal-basis.add"),
    ]
    # A member administrator sees only what concerns its own member.
    assert {e.member for e in ops.audit_trail(TSON_ADMIN, 100, 0)} == {TSON}


def test_member_admin_cannot_touch_another_member(ops: RegistryOperations, persons: bytes) -> None:
    _provider(ops, persons)
    before = ops.store.revision()
    refused = [
        lambda: ops.add_member(GBDFL_ADMIN, "KZ/GOV/050140000011", "new"),
        lambda: ops.add_subsystem(TSON_ADMIN, f"{GBDFL}/other", "sneaky"),
        lambda: ops.register_server(TSON_ADMIN, f"{GBDFL}/ss9", "127.0.0.1:7009", *_csrs()),
        lambda: ops.set_server_address(TSON_ADMIN, SS1, "127.0.0.1:1"),
        lambda: ops.publish_service(TSON_ADMIN, _spec(persons, replace=True)),
        lambda: ops.grant_access(TSON_ADMIN, PERSONS, CLIENT),
        lambda: ops.revoke_access(TSON_ADMIN, PERSONS, CLIENT),
        lambda: ops.add_legal_basis(
            TSON_ADMIN,
            globalconf_pb2.LegalBasis(client=CLIENT, service=PERSONS, law_reference="self-made"),
        ),
        lambda: ops.add_group(TSON_ADMIN, "group:mine"),
        lambda: ops.issue_admin_certificate(TSON_ADMIN, TSON, make_csr(generate_key(), "x")),
        lambda: ops.set_consent_service(TSON_ADMIN, "127.0.0.1:1", b""),
    ]
    for attempt in refused:
        with pytest.raises(AccessDenied):
            attempt()
    with ops.store.read() as r:
        server = r.server(SS1)
        assert server is not None and server.address == "ss1.gbdfl.kz:7001"
        assert not r.has_access(PERSONS, CLIENT)
    assert ops.store.revision() == before


def test_member_admin_may_revoke_only_its_own_certificates(
    ops: RegistryOperations, persons: bytes
) -> None:
    _provider(ops, persons)
    registered = ops.register_server(GBDFL_ADMIN, f"{GBDFL}/ss2", "127.0.0.1:7002", *_csrs())
    serial = f"{registered.tls_certificate.serial_number:x}"
    with pytest.raises(AccessDenied):
        ops.revoke_certificate(TSON_ADMIN, serial, "not mine")
    ops.revoke_certificate(GBDFL_ADMIN, serial, "key compromise")
    with ops.store.read() as r:
        assert registered.tls_certificate.serial_number in r.revoked_serials()
    assert registered.tls_certificate.serial_number in ops.anchor().revoked
    with pytest.raises(AlreadyExists):
        ops.revoke_certificate(OPERATOR, serial, "again")


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (
            lambda o, p: o.add_member(OPERATOR, "KZ/GOV/040340123450", "bad check digit"),
            InvalidIdentifier,
        ),
        (lambda o, p: o.add_member(OPERATOR, GBDFL, "again"), AlreadyExists),
        (lambda o, p: o.add_member(OPERATOR, "KZ/GOV/050140000011", ""), InvalidRequest),
        (lambda o, p: o.add_member(OPERATOR, "KZ/GOV/050140000011", "a\x00b"), InvalidRequest),
        (lambda o, p: o.add_subsystem(OPERATOR, "KZ/GOV/050140000011/x", "no member"), NotFound),
        (lambda o, p: o.add_subsystem(OPERATOR, f"{GBDFL}/Bad_Code", "x"), InvalidIdentifier),
        (lambda o, p: o.register_server(OPERATOR, SS1, "127.0.0.1:7001", *_csrs()), AlreadyExists),
        (
            lambda o, p: o.register_server(OPERATOR, f"{GBDFL}/ss3", "nohost", *_csrs()),
            InvalidRequest,
        ),
        (
            lambda o, p: o.register_server(OPERATOR, f"{GBDFL}/ss3", "h:70000", *_csrs()),
            InvalidRequest,
        ),
        (
            lambda o, p: o.register_server(
                OPERATOR, f"{GBDFL}/ss3", "127.0.0.1:1", b"not a csr", _csrs()[1]
            ),
            CertificateInvalid,
        ),
        (
            lambda o, p: o.register_server(
                OPERATOR,
                f"{GBDFL}/ss3",
                "127.0.0.1:1",
                make_csr(generate_key(Algorithm.ED25519), "x"),
                _csrs()[1],
            ),
            InvalidRequest,
        ),
        (lambda o, p: o.publish_service(OPERATOR, _spec(p)), AlreadyExists),
        (
            lambda o, p: o.publish_service(
                OPERATOR, _spec(p, replace=True, grpc_service="kz.x.v1.No")
            ),
            InvalidRequest,
        ),
        (
            lambda o, p: o.publish_service(
                OPERATOR, _spec(p, replace=True, consent_policy=globalconf_pb2.CONSENT_NOT_REQUIRED)
            ),
            InvalidRequest,
        ),
        (
            lambda o, p: o.publish_service(
                OPERATOR,
                _spec(
                    p,
                    service_id=f"{GBDFL}/gbdfl/open/v1",
                    personal_data=False,
                    consent_policy=globalconf_pb2.CONSENT_REQUIRED,
                ),
            ),
            InvalidRequest,
        ),
        (
            lambda o, p: o.publish_service(OPERATOR, _spec(p, service_id=f"{GBDFL}/nosub/x/v1")),
            NotFound,
        ),
        (
            lambda o, p: o.publish_service(
                OPERATOR, _spec(p, service_id=f"{GBDFL}/gbdfl/y/v1", servers=[])
            ),
            InvalidRequest,
        ),
        (
            lambda o, p: o.publish_service(
                OPERATOR, _spec(p, service_id=f"{GBDFL}/gbdfl/y/v1", servers=[f"{GBDFL}/ss9"])
            ),
            NotFound,
        ),
        (
            lambda o, p: o.publish_service(
                OPERATOR, _spec(p, service_id=f"{GBDFL}/gbdfl/y/v1", default_deadline_ms=10**7)
            ),
            InvalidRequest,
        ),
        (
            lambda o, p: o.publish_service(
                OPERATOR, _spec(p, service_id=f"{GBDFL}/gbdfl/y/v1", max_message_bytes=10**9)
            ),
            InvalidRequest,
        ),
        (
            lambda o, p: o.publish_service(
                OPERATOR,
                _spec(
                    p,
                    service_id=f"{GBDFL}/gbdfl/y/v1",
                    resilience=globalconf_pb2.BreakerSettings(failure_rate_threshold=1.5),
                ),
            ),
            InvalidRequest,
        ),
        (
            lambda o, p: o.publish_service(
                OPERATOR, _spec(p, service_id=f"{GBDFL}/gbdfl/y/version1")
            ),
            InvalidIdentifier,
        ),
        (lambda o, p: o.grant_access(OPERATOR, f"{GBDFL}/gbdfl/none/v1", CLIENT), NotFound),
        (lambda o, p: o.grant_access(OPERATOR, PERSONS, f"{TSON}/nobody"), NotFound),
        (lambda o, p: o.grant_access(OPERATOR, PERSONS, "group:none"), NotFound),
        (lambda o, p: o.grant_access(OPERATOR, PERSONS, "group:Bad Name"), InvalidIdentifier),
        (lambda o, p: o.revoke_access(OPERATOR, PERSONS, CLIENT), NotFound),
        (lambda o, p: o.add_group_member(OPERATOR, "group:none", CLIENT), NotFound),
        (
            lambda o, p: o.add_legal_basis(
                OPERATOR,
                globalconf_pb2.LegalBasis(client=CLIENT, service=PERSONS, law_reference=" "),
            ),
            InvalidRequest,
        ),
        (
            lambda o, p: o.add_legal_basis(
                OPERATOR,
                globalconf_pb2.LegalBasis(
                    client="group:tson", service=PERSONS, law_reference="Art. 1"
                ),
            ),
            InvalidIdentifier,
        ),
        (lambda o, p: o.remove_legal_basis(OPERATOR, "lb-none"), NotFound),
        (lambda o, p: o.revoke_certificate(OPERATOR, "zz", "x"), InvalidRequest),
        (lambda o, p: o.revoke_certificate(OPERATOR, "abcdef", "x"), NotFound),
        (
            lambda o, p: o.set_consent_service(OPERATOR, "127.0.0.1:7100", b"garbage"),
            InvalidRequest,
        ),
        (
            lambda o, p: o.issue_admin_certificate(
                OPERATOR, "KZ/GOV/050140000011", make_csr(generate_key(), "x")
            ),
            NotFound,
        ),
        (
            lambda o, p: o.issue_admin_certificate(OPERATOR, "root", make_csr(generate_key(), "x")),
            InvalidIdentifier,
        ),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    ops: RegistryOperations, persons: bytes, action: object, error: type[GovbusError]
) -> None:
    _provider(ops, persons)
    before = ops.store.revision()
    with ops.store.read() as r:
        content_before = r.content()
    with pytest.raises(error):
        action(ops, persons)  # type: ignore[operator]
    assert ops.store.revision() == before
    with ops.store.read() as r:
        assert r.content() == content_before


def test_consent_service_needs_a_consent_certificate_from_the_registry_ca(
    ops: RegistryOperations, ca: CertificateAuthority, tmp_path: Path
) -> None:
    signing = ca.issue_key(Role.SIGNING, GBDFL)
    with pytest.raises(InvalidRequest, match="role"):
        ops.set_consent_service(OPERATOR, "127.0.0.1:7100", certificate_pem(signing.certificate))
    stranger = CertificateAuthority.init(tmp_path / "other", b"other-passphrase")
    foreign = stranger.issue_key(Role.CONSENT, "consent")
    with pytest.raises(InvalidRequest, match="CERTIFICATE_INVALID"):
        ops.set_consent_service(OPERATOR, "127.0.0.1:7100", certificate_pem(foreign.certificate))
    consent = ca.issue_key(Role.CONSENT, "consent")
    ops.set_consent_service(OPERATOR, "127.0.0.1:7100", certificate_pem(consent.certificate))
    with ops.store.read() as r:
        content = r.content()
    assert content.consent_service_address == "127.0.0.1:7100"
    assert content.consent_service_certificate == certificate_der(consent.certificate)


def test_the_registry_will_not_revoke_its_own_certificates(
    store: SqlRegistryStore, ca: CertificateAuthority
) -> None:
    own = ca.issue_key(Role.REGISTRY, "registry").certificate
    ops = RegistryOperations(store, ca, protected_serials=[own.serial_number])
    with pytest.raises(FailedPrecondition, match="registry's own"):
        ops.revoke_certificate(OPERATOR, f"{own.serial_number:x}", "oops")
    assert store.revision() == 0


def test_published_conf_carries_everything_and_verifies(
    ops: RegistryOperations, persons: bytes, ca: CertificateAuthority
) -> None:
    _provider(ops, persons)
    ops.add_group(OPERATOR, "group:tson")
    ops.add_group_member(OPERATOR, "group:tson", CLIENT)
    ops.grant_access(GBDFL_ADMIN, PERSONS, "group:tson")
    hidden = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    basis = globalconf_pb2.LegalBasis(client=CLIENT, service=PERSONS, law_reference="УПК, ст. 1")
    basis.hidden_until.FromDatetime(hidden)
    ops.add_legal_basis(OPERATOR, basis)
    signing = ca.issue_key(Role.REGISTRY, "registry")
    settings = ConfSettings(
        ttl=600,
        registry_address="127.0.0.1:7000",
        ca_certificates=(certificate_der(ca.certificate),),
        witness_certificate=certificate_der(signing.certificate),
    )
    publisher = ConfPublisher(
        ops.store,
        signing.signer(),
        certificate_der(signing.certificate),
        [ca.certificate],
        settings,
        min_interval=0.05,
    )

    async def scenario() -> tuple[int, int, int]:
        first = await publisher.publish()
        publisher.start()
        ops.revoke_access(GBDFL_ADMIN, PERSONS, "group:tson")
        covered = await publisher.wait_for(ops.store.revision(), 10.0)
        await publisher.stop()
        return first.version, covered.version, covered.revision

    first_version, second_version, revision = asyncio.run(scenario())
    assert second_version > first_version
    assert revision == ops.store.revision()
    view = verify_global_conf(publisher.current.raw, [ca.certificate])
    conf = view.conf
    assert [m.id for m in conf.members] == [GBDFL, TSON]
    assert view.servers[SS1].address == "ss1.gbdfl.kz:7001"
    assert view.method(PERSONS, f"/{PERSON_SERVICE}/GetPerson").idempotent
    assert not view.may_call(CLIENT, PERSONS)  # the group's right was revoked before this one
    assert view.legal_bases(CLIENT, PERSONS)[0].hidden_until.ToDatetime(tzinfo=dt.UTC) == hidden
    assert conf.expires_at.seconds - conf.generated_at.seconds == 600
    assert conf.witness_certificate == certificate_der(signing.certificate)
    assert list(conf.ca_certificates) == [certificate_der(ca.certificate)]
    assert publisher.current.descriptors[PERSONS] == read_back(persons)


def read_back(persons: bytes) -> bytes:
    from registry.descriptors import read_contract

    return read_contract(persons, PERSON_SERVICE).descriptor_set


def test_revocations_made_straight_in_the_ca_index_are_published_too(
    ops: RegistryOperations, ca: CertificateAuthority
) -> None:
    from registry.confbuild import build_global_conf

    admin = ca.issue_key(Role.ADMIN, GBDFL).certificate
    ca.revoke(admin.serial_number, "revoked with govbus pki revoke")
    assert admin.serial_number in ops.anchor().revoked
    with ops.store.read() as r:
        content = r.content()
    conf = build_global_conf(
        content, ConfSettings(), version=1, now=0.0, extra_revoked=ca.revoked_serials()
    )
    assert [int.from_bytes(r.serial, "big") for r in conf.revoked] == [admin.serial_number]


def test_a_burst_of_changes_gives_one_new_version(
    ops: RegistryOperations, ca: CertificateAuthority
) -> None:
    signing = ca.issue_key(Role.REGISTRY, "registry")
    publisher = ConfPublisher(
        ops.store,
        signing.signer(),
        certificate_der(signing.certificate),
        [ca.certificate],
        ConfSettings(),
        min_interval=0.2,
    )

    async def scenario() -> tuple[int, int]:
        first = await publisher.publish()
        publisher.start()
        ops.add_member(OPERATOR, GBDFL, "ГБД ФЛ")
        # Ten changes while the publisher cannot run (no await in between): one version.
        for code in range(10):
            ops.add_subsystem(OPERATOR, f"{GBDFL}/s{code}", "burst")
            publisher.notify_change()
        covered = await publisher.wait_for(0, 10.0)
        await publisher.stop()
        return first.version, covered.version

    first, covered = asyncio.run(scenario())
    assert covered == first + 1
    assert len(publisher.current.conf.subsystems) == 10
