"""The notary registry over real gRPC: reads match the world; writes keep the Civil Code's rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.notary.data import Inheritance, Poa, anniversary, household_records
from adapters.population import Person, World
from adapters.sdk import UNKNOWN_IIN, RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.pb.agencies.notary.v1 import notary_pb2 as pb
from govbus.pb.agencies.notary.v1 import notary_pb2_grpc as pb_grpc

WORLD = World(seed=17, persons=1600)
TODAY = dt.date.today()
POWERS: list[Poa] = []
CASES: list[Inheritance] = []
for _household in WORLD.households():
    _p, _c = household_records(WORLD, _household)
    POWERS += _p
    CASES += _c
DECLARED = {c.deceased for c in CASES}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("notary") / "notary.db"
    agency = load("notary")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.NotaryRegistryStub:
    return pb_grpc.NotaryRegistryStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _living(test: Any = lambda p: True) -> list[Person]:
    return [p for p in WORLD.persons() if p.alive and p.iin not in DECLARED and test(p)]


def test_powers_of_attorney_match_the_world(stub: pb_grpc.NotaryRegistryStub) -> None:
    assert POWERS
    for power in POWERS[:30]:
        got = stub.GetPowerOfAttorney(pb.GetPowerOfAttorneyRequest(number=power.number))
        assert (got.principal_iin, got.agent_iin, got.scope) == (
            power.principal,
            power.agent,
            power.scope,
        )
        assert got.issued_date == power.issued.isoformat()
        assert got.valid_until == power.valid_until.isoformat()
        assert got.revoked == (power.revoked is not None)
        assert power.valid_until <= anniversary(power.issued, 3)
        for who in (power.principal, power.agent):
            listed = stub.ListPowersOfAttorney(pb.ListPowersOfAttorneyRequest(iin=who))
            assert power.number in {p.number for p in listed}


def test_a_car_power_of_attorney_names_the_owners_car() -> None:
    cars = [p for p in POWERS if "VIN" in p.scope]
    assert cars
    for power in cars[:10]:
        owner = WORLD.person(WORLD.index_of(power.principal) or 0)
        vehicle = WORLD.vehicles_of(owner)[0]
        assert vehicle.vin in power.scope and vehicle.plate in power.scope


def test_death_ends_powers_of_attorney() -> None:
    for power in POWERS:
        for iin in (power.principal, power.agent):
            person = WORLD.person(WORLD.index_of(iin) or 0)
            if person.death_date is not None and person.death_date <= power.valid_until:
                assert power.revoked is not None and power.revoked <= person.death_date


def test_inheritance_cases_match_the_world(stub: pb_grpc.NotaryRegistryStub) -> None:
    dead = [p for p in WORLD.persons() if not p.alive]
    assert 0.4 < len(CASES) / len(dead) <= 1
    for case in CASES[:25]:
        deceased = WORLD.person(WORLD.index_of(case.deceased) or 0)
        assert deceased.death_date is not None
        assert deceased.death_date < case.opened <= deceased.death_date + dt.timedelta(days=183)
        (got,) = stub.ListInheritanceCases(
            pb.ListInheritanceCasesRequest(deceased_iin=case.deceased)
        )
        assert got.case_number == case.number and list(got.heir_iins) == list(case.heirs)
        assert got.closed == (case.closed is not None)
        # Heirs of the first order: the spouse, the children, the parents.
        family = {deceased.spouse, *deceased.children, deceased.father, deceased.mother}
        assert {WORLD.index_of(h) for h in case.heirs} <= family


def test_register_and_revoke_a_power_of_attorney(stub: pb_grpc.NotaryRegistryStub) -> None:
    principal, agent = _living(lambda p: 30 <= p.age(TODAY) < 60)[5:7]
    request = pb.RegisterPowerOfAttorneyRequest(
        principal_iin=principal.iin, agent_iin=agent.iin, scope="представление интересов в банке"
    )
    power = stub.RegisterPowerOfAttorney(request)
    assert power.issued_date == TODAY.isoformat()
    assert power.valid_until == anniversary(TODAY, 1).isoformat()  # no date: one year
    assert not power.revoked and power.number.startswith("PA9")
    assert _error(lambda: stub.RegisterPowerOfAttorney(request)).code == "ALREADY_EXISTS"
    listed = stub.ListPowersOfAttorney(pb.ListPowersOfAttorneyRequest(iin=agent.iin))
    assert power.number in {p.number for p in listed}

    by_agent = pb.RevokePowerOfAttorneyRequest(number=power.number, principal_iin=agent.iin)
    assert _error(lambda: stub.RevokePowerOfAttorney(by_agent)).code == "FAILED_PRECONDITION"
    revoke = pb.RevokePowerOfAttorneyRequest(number=power.number, principal_iin=principal.iin)
    assert stub.RevokePowerOfAttorney(revoke).revoked
    assert _error(lambda: stub.RevokePowerOfAttorney(revoke)).code == "FAILED_PRECONDITION"
    # Once revoked, the same powers may be given again.
    assert stub.RegisterPowerOfAttorney(request).number != power.number


def test_opening_an_inheritance_case_ends_the_deceaseds_powers(
    stub: pb_grpc.NotaryRegistryStub,
) -> None:
    principal, agent, heir = _living(lambda p: 30 <= p.age(TODAY) < 60)[10:13]
    power = stub.RegisterPowerOfAttorney(
        pb.RegisterPowerOfAttorneyRequest(
            principal_iin=principal.iin,
            agent_iin=agent.iin,
            scope="управление имуществом",
            valid_until=(TODAY + dt.timedelta(days=700)).isoformat(),
        )
    )
    opened = stub.OpenInheritanceCase(
        pb.OpenInheritanceCaseRequest(deceased_iin=principal.iin, applicant_iin=heir.iin)
    )
    assert list(opened.heir_iins) == [heir.iin] and not opened.closed
    assert opened.opened_date == TODAY.isoformat()
    after = stub.GetPowerOfAttorney(pb.GetPowerOfAttorneyRequest(number=power.number))
    assert after.revoked
    again = pb.OpenInheritanceCaseRequest(deceased_iin=principal.iin, applicant_iin=agent.iin)
    assert _error(lambda: stub.OpenInheritanceCase(again)).code == "ALREADY_EXISTS"
    # The deceased can neither give nor receive powers any more.
    for a, b in ((principal, agent), (agent, principal)):
        request = pb.RegisterPowerOfAttorneyRequest(principal_iin=a.iin, agent_iin=b.iin, scope="x")
        error = _error(lambda r=request: stub.RegisterPowerOfAttorney(r))
        assert error.code == "FAILED_PRECONDITION" and "deceased" in error.message


def test_bad_requests_are_refused_and_change_nothing(stub: pb_grpc.NotaryRegistryStub) -> None:
    principal, agent = _living(lambda p: 30 <= p.age(TODAY) < 60)[20:22]
    child = _living(lambda p: p.age(TODAY) < 16)[0]
    far = anniversary(TODAY, 3) + dt.timedelta(days=1)
    cases = {
        "INVALID_IDENTIFIER": [
            pb.RegisterPowerOfAttorneyRequest(principal_iin="1" * 12, agent_iin=agent.iin),
            pb.RegisterPowerOfAttorneyRequest(principal_iin=principal.iin, agent_iin="abc"),
        ],
        "INVALID_REQUEST": [
            pb.RegisterPowerOfAttorneyRequest(principal_iin=principal.iin, agent_iin=agent.iin),
            pb.RegisterPowerOfAttorneyRequest(
                principal_iin=principal.iin, agent_iin=principal.iin, scope="x"
            ),
            pb.RegisterPowerOfAttorneyRequest(
                principal_iin=principal.iin, agent_iin=agent.iin, scope="x", valid_until=str(far)
            ),
            pb.RegisterPowerOfAttorneyRequest(
                principal_iin=principal.iin, agent_iin=agent.iin, scope="x", valid_until=str(TODAY)
            ),
        ],
        "FAILED_PRECONDITION": [
            pb.RegisterPowerOfAttorneyRequest(
                principal_iin=child.iin, agent_iin=agent.iin, scope="x"
            ),
            pb.RegisterPowerOfAttorneyRequest(
                principal_iin=principal.iin, agent_iin=child.iin, scope="x"
            ),
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            got = _error(lambda r=request: stub.RegisterPowerOfAttorney(r)).code
            assert got == code, (code, request)
    assert not list(stub.ListPowersOfAttorney(pb.ListPowersOfAttorneyRequest(iin=child.iin)))
    before = list(stub.ListPowersOfAttorney(pb.ListPowersOfAttorneyRequest(iin=principal.iin)))

    deceased = next(p for p in WORLD.persons() if not p.alive and p.iin not in DECLARED)
    opening = {
        "INVALID_REQUEST": pb.OpenInheritanceCaseRequest(
            deceased_iin=deceased.iin,
            applicant_iin=principal.iin,
            opened_date=(TODAY + dt.timedelta(days=1)).isoformat(),
        ),
        "FAILED_PRECONDITION": pb.OpenInheritanceCaseRequest(
            deceased_iin=deceased.iin, applicant_iin=child.iin
        ),
        "INVALID_IDENTIFIER": pb.OpenInheritanceCaseRequest(
            deceased_iin="000000000000", applicant_iin=principal.iin
        ),
    }
    for code, request in opening.items():
        assert _error(lambda r=request: stub.OpenInheritanceCase(r)).code == code, code
    same = pb.OpenInheritanceCaseRequest(deceased_iin=principal.iin, applicant_iin=principal.iin)
    assert _error(lambda: stub.OpenInheritanceCase(same)).code == "INVALID_REQUEST"
    listed = stub.ListInheritanceCases(pb.ListInheritanceCasesRequest(deceased_iin=deceased.iin))
    assert not list(listed)
    after = list(stub.ListPowersOfAttorney(pb.ListPowersOfAttorneyRequest(iin=principal.iin)))
    assert after == before

    for number in ("", "PA123", "pa0000000001", "PA00000000０1"):
        request = pb.GetPowerOfAttorneyRequest(number=number)
        assert _error(lambda r=request: stub.GetPowerOfAttorney(r)).code == "INVALID_IDENTIFIER"
    missing = pb.GetPowerOfAttorneyRequest(number="PA8999999999")
    assert _error(lambda: stub.GetPowerOfAttorney(missing)).code == "NOT_FOUND"
    revoke = pb.RevokePowerOfAttorneyRequest(number="PA8999999999", principal_iin=principal.iin)
    assert _error(lambda: stub.RevokePowerOfAttorney(revoke)).code == "NOT_FOUND"
    assert not list(stub.ListPowersOfAttorney(pb.ListPowersOfAttorneyRequest(iin=UNKNOWN_IIN)))


def test_a_consent_acts_only_for_its_subject(stub: pb_grpc.NotaryRegistryStub) -> None:
    principal, agent = _living(lambda p: 30 <= p.age(TODAY) < 60)[30:32]
    request = pb.RegisterPowerOfAttorneyRequest(
        principal_iin=principal.iin, agent_iin=agent.iin, scope="x"
    )
    error = _error(
        lambda: stub.RegisterPowerOfAttorney(request, metadata=(("govbus-subject", agent.iin),))
    )
    assert error.code == "CONSENT_SCOPE"
    power = stub.RegisterPowerOfAttorney(request, metadata=(("govbus-subject", principal.iin),))
    assert power.principal_iin == principal.iin


# Last: the kit's sample writes change the records the tests above read.
def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("notary"), WORLD).raise_for_failures()
