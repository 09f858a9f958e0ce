"""The registry as a process: administration over real mutual TLS, and discovery.

One `govbus registry serve` per backend (SQLite and the real PostgreSQL) serves
every test in this module; each test registers members of its own, so the tests
do not depend on each other's order.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from govbus.crypto.keys import generate_key, private_key_pem
from govbus.crypto.pki import CertificateAuthority, Role, certificate_pem
from govbus.errors import (
    AccessDenied,
    AlreadyExists,
    InvalidRequest,
    ServiceUnavailable,
    UnknownMethod,
    UnknownService,
    from_rpc_error,
)
from govbus.ids import Bin
from govbus.pb.govbus.v1 import registry_pb2, registry_pb2_grpc
from govbus.process import GovbusProcess
from registry.bootstrap import register_server, request_admin_certificate, serve_args
from registry.client import AdminClient, DiscoveryClient
from registry.store_postgres import PostgresRegistryStore
from tests.conftest import PASSPHRASE
from tests.test_registry_descriptors import PERSON_SERVICE, person_descriptor_set

_serials = itertools.count(1)


def new_member_id() -> str:
    while True:
        made = Bin.build(2024, 5, next(_serials) + 40_000)
        if made is not None:
            return f"KZ/GOV/{made}"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GovbusProcess]:
    state = tmp_path_factory.mktemp("registry")
    database = schema = None
    if request.param == "postgres":
        database = request.getfixturevalue("pg_dsn")
        schema = f"registry_proc_{uuid.uuid4().hex[:10]}"
    process = GovbusProcess(
        *serve_args(state / "state", regen_interval=0.1, database=database, db_schema=schema),
        env={"GOVBUS_KEY_PASSPHRASE": PASSPHRASE.decode()},
    )
    with process:
        yield process
    if database is not None and schema is not None:
        cleanup = PostgresRegistryStore(database, schema=schema)
        cleanup.drop_schema()
        cleanup.close()


@pytest.fixture(scope="module")
def operator(registry: GovbusProcess) -> Iterator[AdminClient]:
    with AdminClient.operator(registry.info, PASSPHRASE) as client:
        yield client


@pytest.fixture(scope="module")
def discovery(registry: GovbusProcess) -> Iterator[DiscoveryClient]:
    with DiscoveryClient.from_files(
        registry.info["public"], ca=Path(registry.info["ca_cert"])
    ) as c:
        yield c


@pytest.fixture(scope="module")
def persons(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return person_descriptor_set(tmp_path_factory.mktemp("proto"))


def member_admin(
    registry: GovbusProcess, operator: AdminClient, member: str, directory: Path
) -> AdminClient:
    key, cert = request_admin_certificate(operator, member, directory / "admin", PASSPHRASE)
    return AdminClient.from_files(
        registry.info["admin"],
        ca=Path(registry.info["ca_cert"]),
        cert=cert,
        key=key,
        passphrase=PASSPHRASE,
    )


def provider(operator: AdminClient, persons: bytes, directory: Path) -> dict[str, str]:
    """A member with a subsystem, a security server and a published service."""
    member = new_member_id()
    operator.add_member(member, f"agency {member}")
    operator.add_subsystem(f"{member}/persons", "person registry")
    server = register_server(operator, f"{member}/ss1", "127.0.0.1:7001", directory, PASSPHRASE)
    service = f"{member}/persons/person/v1"
    operator.publish_service(
        service,
        PERSON_SERVICE,
        persons,
        [server.server_id],
        personal_data=True,
        idempotent=["GetPerson"],
    )
    return {"member": member, "service": service, "server": server.server_id}


def test_operator_bootstraps_a_provider_and_discovery_shows_it(
    registry: GovbusProcess,
    operator: AdminClient,
    discovery: DiscoveryClient,
    persons: bytes,
    tmp_path: Path,
) -> None:
    assert operator.whoami().role == "operator"
    made = provider(operator, persons, tmp_path / "ss")
    consumer = new_member_id()
    operator.add_member(consumer, "ЦОН")
    operator.add_subsystem(f"{consumer}/con", "operator app")
    operator.add_subsystem(f"{consumer}/portal", "portal")
    group = f"group:g{uuid.uuid4().hex[:8]}"
    operator.add_group(group)
    operator.add_group_member(group, f"{consumer}/portal")
    operator.grant(made["service"], f"{consumer}/con")
    operator.grant(made["service"], group)
    version = operator.wait_published()
    assert version >= 2

    assert made["member"] in {m.id for m in discovery.members()}
    assert [s.id for s in discovery.subsystems(consumer)] == [
        f"{consumer}/con",
        f"{consumer}/portal",
    ]
    assert [s.id for s in discovery.services(made["member"])] == [made["service"]]
    service = discovery.service(made["service"])
    assert {m.name: m.server_streaming for m in service.methods} == {
        f"/{PERSON_SERVICE}/GetPerson": False,
        f"/{PERSON_SERVICE}/WatchPerson": True,
    }
    direct = discovery.allowed(f"{consumer}/con")
    assert [(a.service.id, list(a.via)) for a in direct] == [(made["service"], [f"{consumer}/con"])]
    via_group = discovery.allowed(f"{consumer}/portal")
    assert [(a.service.id, list(a.via)) for a in via_group] == [(made["service"], [group])]
    assert discovery.allowed(f"{made['member']}/persons") == []
    with pytest.raises(UnknownService):
        discovery.service(f"{made['member']}/persons/none/v1")

    # The descriptor is enough to build a request, as grpcurl -protoset does.
    answer = discovery.descriptor(made["service"])
    files = descriptor_pb2.FileDescriptorSet.FromString(answer.descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    method = pool.FindServiceByName(PERSON_SERVICE).methods_by_name["GetPerson"]
    request_class = message_factory.GetMessageClass(method.input_type)
    request = request_class(iin="900101300123")
    assert request_class.FromString(request.SerializeToString()).iin == "900101300123"
    assert answer.grpc_service == PERSON_SERVICE


def test_publishing_a_descriptor_without_the_named_service_is_refused(
    operator: AdminClient, discovery: DiscoveryClient, persons: bytes, tmp_path: Path
) -> None:
    made = provider(operator, persons, tmp_path / "ss")
    wrong = f"{made['member']}/persons/wrong/v1"
    with pytest.raises(InvalidRequest) as refused:
        operator.publish_service(wrong, "kz.gov.testpersons.v1.Missing", persons, [made["server"]])
    assert "does not contain the service kz.gov.testpersons.v1.Missing" in refused.value.message
    operator.wait_published()
    assert [s.id for s in discovery.services(made["member"])] == [made["service"]]


def test_member_admin_is_confined_to_its_own_member(
    registry: GovbusProcess,
    operator: AdminClient,
    discovery: DiscoveryClient,
    persons: bytes,
    tmp_path: Path,
) -> None:
    victim = provider(operator, persons, tmp_path / "victim")
    intruder = new_member_id()
    operator.add_member(intruder, "another agency")
    with member_admin(registry, operator, intruder, tmp_path) as admin:
        assert (admin.whoami().role, admin.whoami().member) == ("member-admin", intruder)
        admin.add_subsystem(f"{intruder}/own", "its own subsystem")  # allowed
        attempts = [
            lambda: admin.add_subsystem(f"{victim['member']}/evil", "x"),
            lambda: admin.grant(victim["service"], f"{intruder}/own"),
            lambda: admin.revoke(victim["service"], f"{intruder}/own"),
            lambda: admin.set_server_address(victim["server"], "127.0.0.1:9999"),
            lambda: admin.add_legal_basis(f"{intruder}/own", victim["service"], "made up"),
            lambda: admin.publish_service(
                victim["service"],
                PERSON_SERVICE,
                persons,
                [victim["server"]],
                personal_data=True,
                replace=True,
            ),
            lambda: admin.add_member(new_member_id(), "self-made member"),
            lambda: admin.add_group("group:intruders"),
        ]
        for attempt in attempts:
            with pytest.raises(AccessDenied):
                attempt()
        trail = admin.audit_trail()
    assert {e.member for e in trail} == {intruder}
    operator.wait_published()
    assert [s.id for s in discovery.subsystems(victim["member"])] == [f"{victim['member']}/persons"]
    assert discovery.allowed(f"{intruder}/own") == []
    assert discovery.service(victim["service"]).servers == [victim["server"]]


def _raw_admin_call(registry: GovbusProcess, **credentials: bytes) -> Any:
    ca_pem = Path(registry.info["ca_cert"]).read_bytes()
    channel = grpc.secure_channel(
        registry.info["admin"],
        grpc.ssl_channel_credentials(root_certificates=ca_pem, **credentials),
    )
    try:
        return registry_pb2_grpc.RegistryAdminStub(channel).AuditTrail(
            registry_pb2.RegistryAuditTrailRequest(), timeout=5
        )
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None
    finally:
        channel.close()


def test_anonymous_and_foreign_callers_get_nothing(
    registry: GovbusProcess, operator: AdminClient, tmp_path: Path
) -> None:
    assert operator.whoami().name == "operator"  # the port is up: refusals below are refusals
    # No client certificate: the admin port does not even complete the handshake.
    with pytest.raises(ServiceUnavailable):
        _raw_admin_call(registry)
    # A certificate from another CA: same.
    stranger = CertificateAuthority.init(tmp_path / "stranger", PASSPHRASE)
    forged = stranger.issue_key(Role.ADMIN, "operator")
    with pytest.raises(ServiceUnavailable):
        _raw_admin_call(
            registry,
            private_key=private_key_pem(forged.key),
            certificate_chain=certificate_pem(forged.certificate),
        )
    # The public port does not serve the admin API at all.
    ca_pem = Path(registry.info["ca_cert"]).read_bytes()
    channel = grpc.secure_channel(
        registry.info["public"], grpc.ssl_channel_credentials(root_certificates=ca_pem)
    )
    with pytest.raises(grpc.RpcError) as missing:
        registry_pb2_grpc.RegistryAdminStub(channel).AuditTrail(
            registry_pb2.RegistryAuditTrailRequest(), timeout=5
        )
    assert isinstance(from_rpc_error(missing.value), UnknownMethod)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()


def test_certificates_of_the_ca_that_are_not_admin_certificates_are_refused(
    registry: GovbusProcess, operator: AdminClient, persons: bytes, tmp_path: Path
) -> None:
    made = provider(operator, persons, tmp_path / "ss")
    # A security server's TLS certificate chains to the registry CA but is not an admin.
    from govbus.crypto.keys import load_private_key

    server_key = load_private_key(tmp_path / "ss" / "tls.key.pem", PASSPHRASE)
    with pytest.raises(AccessDenied, match="role server"):
        _raw_admin_call(
            registry,
            private_key=private_key_pem(server_key),
            certificate_chain=(tmp_path / "ss" / "tls.cert.pem").read_bytes(),
        )
    # An admin certificate for a name that is neither the operator nor a member.
    ca = CertificateAuthority.open(Path(registry.info["ca_cert"]).parent, PASSPHRASE)
    nobody = ca.issue(Role.ADMIN, "somebody", (key := generate_key()).public_key())
    with pytest.raises(AccessDenied, match="neither"):
        _raw_admin_call(
            registry, private_key=private_key_pem(key), certificate_chain=certificate_pem(nobody)
        )
    assert made["member"]


def test_a_revoked_admin_certificate_is_refused_at_once(
    registry: GovbusProcess, operator: AdminClient, tmp_path: Path
) -> None:
    member = new_member_id()
    operator.add_member(member, "agency")
    with member_admin(registry, operator, member, tmp_path) as admin:
        admin.add_subsystem(f"{member}/a", "first")
        serial = admin_serial(tmp_path / "admin.cert.pem")
        operator.revoke_certificate(serial, "administrator left")
        with pytest.raises(AccessDenied, match="revoked"):
            admin.add_subsystem(f"{member}/b", "second")
    with pytest.raises(AlreadyExists):
        operator.revoke_certificate(serial, "twice")
    version = operator.wait_published()
    assert version > 0


def admin_serial(cert_path: Path) -> str:
    from govbus.crypto.pki import load_certificate

    return f"{load_certificate(cert_path).serial_number:x}"
