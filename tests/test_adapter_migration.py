"""Migration police (registration at an address) over real gRPC."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.population import Role, World
from adapters.sdk import RunningAdapter, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.migration.v1 import migration_pb2 as pb
from govbus.pb.agencies.migration.v1 import migration_pb2_grpc as pb_grpc

WORLD = World(seed=5, persons=800)
TODAY = dt.date.today()
PERMANENT = pb.REGISTRATION_KIND_PERMANENT


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("migration") / "migration.db"
    agency = load("migration")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.ResidenceRegistryStub:
    return pb_grpc.ResidenceRegistryStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.Registration):
            list(result)
    return from_rpc_error(failure.value)


def test_registration_matches_the_world(stub: pb_grpc.ResidenceRegistryStub) -> None:
    person = next(p for p in WORLD.persons() if p.alive and p.previous_registration)
    current = stub.GetRegistration(pb.GetRegistrationRequest(iin=person.iin))
    assert current.rca == person.address.rca and current.current
    assert current.address_line == person.address.line()
    assert current.since_date == person.registered_since.isoformat()
    history = list(stub.ListRegistrationHistory(pb.ListRegistrationHistoryRequest(iin=person.iin)))
    assert person.previous_registration is not None
    assert [h.rca for h in history] == [person.previous_registration[0].rca, person.address.rca]
    assert history[0].until_date == history[1].since_date


def test_residents_are_the_living_household(stub: pb_grpc.ResidenceRegistryStub) -> None:
    household = next(h for h in WORLD.households() if any(not p.alive for p in h.members))
    residents = list(stub.ListResidents(pb.ListResidentsRequest(rca=household.address.rca)))
    assert {r.iin for r in residents} == {p.iin for p in household.members if p.alive}


def test_moving_ends_the_previous_registration(stub: pb_grpc.ResidenceRegistryStub) -> None:
    mover = next(p for p in WORLD.persons() if p.alive and p.role is Role.HEAD)
    target = next(h.address for h in WORLD.households() if h.address.rca != mover.address.rca)
    moved = stub.RegisterAtAddress(
        pb.RegisterAtAddressRequest(iin=mover.iin, rca=target.rca, kind=PERMANENT)
    )
    assert moved.rca == target.rca and moved.since_date == TODAY.isoformat() and moved.current
    history = list(stub.ListRegistrationHistory(pb.ListRegistrationHistoryRequest(iin=mover.iin)))
    assert [h.current for h in history][-2:] == [False, True]
    assert history[-2].until_date == TODAY.isoformat()
    old = stub.ListResidents(pb.ListResidentsRequest(rca=mover.address.rca))
    assert mover.iin not in {r.iin for r in old}
    again = pb.RegisterAtAddressRequest(iin=mover.iin, rca=target.rca, kind=PERMANENT)
    assert _error(lambda: stub.RegisterAtAddress(again)).code == "ALREADY_EXISTS"


def test_a_newborn_can_be_registered(stub: pb_grpc.ResidenceRegistryStub) -> None:
    home = WORLD.person(1).address
    newborn = Iin.build(TODAY, Sex.MALE, 9700) or Iin.build(TODAY, Sex.MALE, 9701)
    assert newborn is not None
    assert _error(
        lambda: stub.GetRegistration(pb.GetRegistrationRequest(iin=newborn.value))
    ).code == ("NOT_FOUND")
    stub.RegisterAtAddress(pb.RegisterAtAddressRequest(iin=newborn.value, rca=home.rca, kind=1))
    residents = stub.ListResidents(pb.ListResidentsRequest(rca=home.rca))
    assert newborn.value in {r.iin for r in residents}


def test_bad_registrations_are_refused_and_change_nothing(
    stub: pb_grpc.ResidenceRegistryStub,
) -> None:
    person = next(p for p in WORLD.persons() if p.alive and p.role is Role.CHILD)
    before = stub.GetRegistration(pb.GetRegistrationRequest(iin=person.iin))
    home = WORLD.person(1).address.rca
    cases = {
        "INVALID_IDENTIFIER": pb.RegisterAtAddressRequest(iin=person.iin, rca="12", kind=1),
        "NOT_FOUND": pb.RegisterAtAddressRequest(
            iin=person.iin, rca="0219999999999999", kind=PERMANENT
        ),
        "INVALID_REQUEST": pb.RegisterAtAddressRequest(
            iin=person.iin, rca=home, kind=pb.REGISTRATION_KIND_TEMPORARY
        ),
        "FAILED_PRECONDITION": pb.RegisterAtAddressRequest(
            iin=person.iin, rca=home, kind=PERMANENT, since_date="1900-01-01"
        ),
    }
    for code, request in cases.items():
        assert _error(lambda r=request: stub.RegisterAtAddress(r)).code == code, code
    no_kind = pb.RegisterAtAddressRequest(iin=person.iin, rca=home)
    assert _error(lambda: stub.RegisterAtAddress(no_kind)).code == "INVALID_REQUEST"
    assert stub.GetRegistration(pb.GetRegistrationRequest(iin=person.iin)) == before


def test_temporary_registration_keeps_the_permanent_one(
    stub: pb_grpc.ResidenceRegistryStub,
) -> None:
    person = [p for p in WORLD.persons() if p.alive and p.role is Role.CHILD][3]
    elsewhere = WORLD.person(200).address.rca
    temporary = stub.RegisterAtAddress(
        pb.RegisterAtAddressRequest(
            iin=person.iin,
            rca=elsewhere,
            kind=pb.REGISTRATION_KIND_TEMPORARY,
            until_date=(TODAY + dt.timedelta(days=90)).isoformat(),
        )
    )
    assert temporary.kind == pb.REGISTRATION_KIND_TEMPORARY
    permanent = stub.GetRegistration(pb.GetRegistrationRequest(iin=person.iin))
    assert permanent.rca == person.address.rca


def test_deregister(stub: pb_grpc.ResidenceRegistryStub) -> None:
    person = next(p for p in WORLD.persons() if p.alive and p.role is Role.SINGLE)
    ended = stub.Deregister(pb.DeregisterRequest(iin=person.iin, reason="выезд за рубеж"))
    assert not ended.current and ended.until_date == TODAY.isoformat()
    assert _error(lambda: stub.GetRegistration(pb.GetRegistrationRequest(iin=person.iin))).code == (
        "NOT_FOUND"
    )
    again = pb.DeregisterRequest(iin=person.iin, reason="x")
    assert _error(lambda: stub.Deregister(again)).code == "NOT_FOUND"
