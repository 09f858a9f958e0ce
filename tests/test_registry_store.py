"""The registry store: one suite, run against SQLite and the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from govbus.errors import FailedPrecondition, Internal, InvalidRequest
from govbus.pb.govbus.v1 import globalconf_pb2
from registry.store import SqlRegistryStore, open_store
from registry.store_postgres import PostgresRegistryStore

MEMBER = "KZ/GOV/040340123459"
OTHER = "KZ/GOV/990140000017"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, schema) of an empty store; PostgreSQL gets a schema of its own."""
    if request.param == "sqlite":
        yield str(tmp_path / "registry.db"), "unused"
        return
    dsn = request.getfixturevalue("pg_dsn")
    schema = f"registry_test_{uuid.uuid4().hex[:10]}"
    yield dsn, schema
    cleanup = PostgresRegistryStore(dsn, schema=schema)
    cleanup.drop_schema()
    cleanup.close()


@pytest.fixture
def store(backend: tuple[str, str]) -> Iterator[SqlRegistryStore]:
    opened = open_store(backend[0], schema=backend[1])
    yield opened
    opened.close()


def _add_member(store: SqlRegistryStore, member: str = MEMBER, actor: str = "operator") -> int:
    with store.write(actor) as w:
        record = globalconf_pb2.Member(id=member, name=f"name of {member}")
        w.put_member(record)
        w.note("member.add", member, member, "", record.name)
    return w.revision


def test_every_record_kind_round_trips_in_id_order(store: SqlRegistryStore) -> None:
    _add_member(store, OTHER)
    _add_member(store, MEMBER)
    service_id = f"{MEMBER}/gbdfl/person/v1"
    with store.write("operator") as w:
        w.put_subsystem(globalconf_pb2.Subsystem(id=f"{MEMBER}/gbdfl", name="persons"), MEMBER)
        w.put_subsystem(globalconf_pb2.Subsystem(id=f"{OTHER}/con", name="ЦОН"), OTHER)
        w.put_server(
            globalconf_pb2.SecurityServer(
                id=f"{MEMBER}/ss1", owner=MEMBER, address="127.0.0.1:7001", tls_certificate=b"der"
            ),
            b"signing-der",
        )
        w.put_service(
            globalconf_pb2.Service(id=service_id, grpc_service="kz.gov.x.v1.P", servers=["s"]),
            f"{MEMBER}/gbdfl",
            MEMBER,
            b"descriptor-bytes",
        )
        w.add_group("group:tson")
        w.add_group_member("group:tson", f"{OTHER}/con")
        w.add_access(service_id, "group:tson")
        w.add_access(service_id, f"{OTHER}/con")
        w.put_legal_basis(
            globalconf_pb2.LegalBasis(
                id="lb-1", client=f"{OTHER}/con", service=service_id, law_reference="Art. 1"
            )
        )
        w.add_revocation(globalconf_pb2.RevokedCertificate(serial=b"\x01\x02", reason="lost"))
        w.set_setting("consent_service_address", b"127.0.0.1:7100")
        w.note("setup", "all", "", "", "")
    with store.read() as r:
        content = r.content()
        assert r.server_signing_certificate(f"{MEMBER}/ss1") == b"signing-der"
        assert r.has_access(service_id, "group:tson")
        assert not r.has_access(service_id, f"{MEMBER}/gbdfl")
        assert r.revoked_serials() == frozenset({0x0102})
        assert r.revocation(b"\x01\x02") is not None
        assert r.member("KZ/GOV/000000000000") is None
    assert [m.id for m in content.members] == sorted([MEMBER, OTHER])
    assert [s.id for s in content.subsystems] == [f"{MEMBER}/gbdfl", f"{OTHER}/con"]
    assert content.servers[0].address == "127.0.0.1:7001"
    assert content.services[0].grpc_service == "kz.gov.x.v1.P"
    assert content.descriptors == {service_id: b"descriptor-bytes"}
    assert [(a.service, a.client) for a in content.access_rights] == [
        (service_id, f"{OTHER}/con"),
        (service_id, "group:tson"),
    ]
    assert [(g.id, list(g.members)) for g in content.groups] == [("group:tson", [f"{OTHER}/con"])]
    assert content.legal_bases[0].law_reference == "Art. 1"
    assert content.consent_service_address == "127.0.0.1:7100"
    assert content.revision == store.revision() == 3


def test_each_change_is_one_revision_with_its_audit_entry(store: SqlRegistryStore) -> None:
    first = _add_member(store, MEMBER, actor="operator")
    second = _add_member(store, OTHER, actor="operator")
    assert (first, second) == (1, 2)
    trail = store.audit_trail()
    assert [(e.seq > 0, e.actor, e.action, e.target, e.revision) for e in trail] == [
        (True, "operator", "member.add", OTHER, 2),
        (True, "operator", "member.add", MEMBER, 1),
    ]
    assert trail[0].at >= trail[1].at > 0
    only_member = store.audit_trail(member=MEMBER)
    assert [e.target for e in only_member] == [MEMBER]
    older = store.audit_trail(before_seq=trail[0].seq)
    assert [e.target for e in older] == [MEMBER]


def test_a_refused_change_leaves_nothing_behind(store: SqlRegistryStore) -> None:
    _add_member(store)
    with pytest.raises(InvalidRequest), store.write("operator") as w:
        w.put_member(globalconf_pb2.Member(id=OTHER, name="half-done"))
        w.note("member.add", OTHER, OTHER, "", "x")
        raise InvalidRequest("refused after writing")
    with pytest.raises(Internal, match="audit trail"), store.write("operator") as w:
        w.put_member(globalconf_pb2.Member(id=OTHER, name="unrecorded"))
    with store.read() as r:
        assert r.member(OTHER) is None
    assert store.revision() == 1
    assert len(store.audit_trail()) == 1


def test_database_constraints_surface_as_vocabulary_errors(store: SqlRegistryStore) -> None:
    with pytest.raises(FailedPrecondition), store.write("operator") as w:
        # A subsystem of a member the store does not know: the foreign key refuses it.
        w.put_subsystem(globalconf_pb2.Subsystem(id=f"{OTHER}/con"), OTHER)
        w.note("subsystem.add", f"{OTHER}/con", OTHER, "", "")
    assert store.revision() == 0


def test_conf_versions_never_repeat_across_reopen(backend: tuple[str, str]) -> None:
    first = open_store(backend[0], schema=backend[1])
    versions = [first.next_conf_version() for _ in range(3)]
    first.close()
    second = open_store(backend[0], schema=backend[1])
    versions.append(second.next_conf_version())
    second.close()
    assert versions == [1, 2, 3, 4]
