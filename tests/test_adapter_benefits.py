"""ГЦВП over real gRPC: benefits and payments from the world, applications and their rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.benefits.data import newborn_iin
from adapters.benefits.rates import (
    anniversary,
    birth_grant_tiyn,
    childcare_end,
    childcare_tiyn,
    retirement_date,
)
from adapters.population import Household, Person, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.benefits.v1 import benefits_pb2 as pb
from govbus.pb.agencies.benefits.v1 import benefits_pb2_grpc as pb_grpc

WORLD = World(seed=17, persons=1200)
TODAY = dt.date.today()
ACTIVE, ENDED, PENDING = (
    pb.BENEFIT_STATUS_ACTIVE,
    pb.BENEFIT_STATUS_ENDED,
    pb.BENEFIT_STATUS_PENDING,
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("benefits") / "benefits.db"
    agency = load("benefits")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.StateBenefitsStub:
    return pb_grpc.StateBenefitsStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.Benefit):
            list(result)
    return from_rpc_error(failure.value)


def _benefits(stub: pb_grpc.StateBenefitsStub, iin: str) -> list[pb.Benefit]:
    return list(stub.ListBenefits(pb.ListBenefitsRequest(iin=iin)))


def _payments(stub: pb_grpc.StateBenefitsStub, iin: str, **kw: str) -> list[pb.Payment]:
    return list(stub.ListPayments(pb.ListPaymentsRequest(iin=iin, **kw)))


def _families() -> list[Household]:
    return [h for h in WORLD.households() if h.marriage is not None and len(h.members) > 2]


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("benefits"), WORLD).raise_for_failures()


def test_a_mother_receives_the_birth_grant_and_childcare_for_each_child(
    stub: pb_grpc.StateBenefitsStub,
) -> None:
    checked = 0
    for family in _families():
        mother = family.members[1]
        benefits = _benefits(stub, mother.iin)
        for number, child in enumerate(family.members[2:], start=1):
            mine = {b.kind: b for b in benefits if b.child_iin == child.iin}
            if child.birth_date < dt.date(2008, 1, 1):
                assert not mine
                continue
            grant = mine[pb.BENEFIT_KIND_BIRTH_GRANT]
            year = child.birth_date.year
            assert grant.one_off_tiyn == birth_grant_tiyn(year, number) and grant.monthly_tiyn == 0
            assert grant.iin == mother.iin
            care = mine[pb.BENEFIT_KIND_CHILDCARE]
            assert care.monthly_tiyn == childcare_tiyn(year, number)
            assert care.start_date == child.birth_date.isoformat()
            if care.status != PENDING:
                assert grant.status == ENDED and grant.start_date > child.birth_date.isoformat()
                end = childcare_end(child.birth_date)
                assert care.end_date == min(end, child.death_date or end).isoformat()
                assert care.status == (ACTIVE if end > WORLD.today else ENDED)
            checked += 1
    assert checked >= 50


def test_pensioners_are_paid_every_month(stub: pb_grpc.StateBenefitsStub) -> None:
    pensioners = [
        p
        for p in WORLD.persons()
        if retirement_date(p.birth_date, p.sex) < dt.date(2023, 1, 1)
        and (p.death_date is None or p.death_date > dt.date(2025, 1, 1))
    ]
    assert len(pensioners) >= 20
    for person in pensioners:
        pension = next(
            b for b in _benefits(stub, person.iin) if b.kind == pb.BENEFIT_KIND_AGE_PENSION
        )
        assert pension.start_date == retirement_date(person.birth_date, person.sex).isoformat()
        payments = [p for p in _payments(stub, person.iin) if p.benefit_id == pension.benefit_id]
        if person.death_date is None:
            assert pension.status == ACTIVE and pension.end_date == ""
            assert [p.period for p in payments][:2] == ["2024-01", "2024-02"]
            assert len(payments) == 24
            # The monthly amount is this year's; each January raised it (by 7 points).
            assert payments[-1].amount_tiyn == pension.monthly_tiyn * 93 // 100
            assert payments[0].amount_tiyn == pension.monthly_tiyn * 86 // 100
        else:
            assert pension.status == ENDED
            assert pension.end_date == person.death_date.isoformat()
            assert all(p.paid_date < pension.end_date for p in payments)
        for payment in payments:
            assert payment.paid_date.startswith(payment.period) and payment.iin == person.iin


def test_kinds_of_the_world_are_all_there(stub: pb_grpc.StateBenefitsStub) -> None:
    kinds: dict[int, int] = {}
    for person in WORLD.persons():
        for benefit in _benefits(stub, person.iin):
            kinds[benefit.kind] = kinds.get(benefit.kind, 0) + 1
            if benefit.kind == pb.BENEFIT_KIND_SURVIVOR:
                child = WORLD.person(WORLD.index_of(benefit.child_iin) or 0)
                dead = [WORLD.person(i) for i in (child.father, child.mother) if i is not None]
                assert any(p.death_date for p in dead) and person.alive
            if benefit.kind == pb.BENEFIT_KIND_LARGE_FAMILY:
                assert len(WORLD.household_of(person.index).members) - 2 >= 4
            if benefit.kind == pb.BENEFIT_KIND_FUNERAL_GRANT:
                spouse = WORLD.person(person.spouse or 0)
                assert spouse.death_date is not None
                assert benefit.start_date > spouse.death_date.isoformat()
    assert set(kinds) == set(range(1, 8)), kinds


def test_payment_periods(stub: pb_grpc.StateBenefitsStub) -> None:
    person = next(p for p in WORLD.persons() if p.alive and len(_payments(stub, p.iin)) >= 24)
    everything = _payments(stub, person.iin)
    half = _payments(stub, person.iin, from_period="2025-01", to_period="2025-06")
    assert half == [p for p in everything if "2025-01" <= p.period <= "2025-06"]
    assert len(half) >= 6
    assert _payments(stub, person.iin, from_period="2030-01") == []
    for bad in ({"from_period": "2025-00"}, {"to_period": "2025/01"}, {"from_period": "x"}):
        assert _error(lambda b=bad: _payments(stub, person.iin, **b)).code == "INVALID_REQUEST"
    wrong_way = {"from_period": "2025-06", "to_period": "2025-01"}
    assert _error(lambda: _payments(stub, person.iin, **wrong_way)).code == "INVALID_REQUEST"
    assert _payments(stub, WORLD.unknown_iin()) == []
    assert _benefits(stub, WORLD.unknown_iin()) == []


def _mother_of_young() -> tuple[Person, list[Person]]:
    family = next(
        h
        for h in _families()
        if h.members[1].alive and h.members[1].age() < 45 and len(h.members) == 4
    )
    return family.members[1], list(family.members[2:])


def test_a_birth_applies_for_the_grant_and_childcare(stub: pb_grpc.StateBenefitsStub) -> None:
    mother, children = _mother_of_young()
    known = sum(c.age(TODAY) < 18 and c.birth_date.year >= 2008 for c in children)
    child = newborn_iin(TODAY, 9700)
    grant = stub.ApplyForBenefit(
        pb.ApplyForBenefitRequest(iin=mother.iin, kind=pb.BENEFIT_KIND_BIRTH_GRANT, child_iin=child)
    )
    assert grant.status == PENDING and grant.start_date == TODAY.isoformat()
    assert grant.one_off_tiyn == birth_grant_tiyn(TODAY.year, known + 1)
    assert grant.benefit_id.startswith("GCVP-") and grant.child_iin == child
    again = pb.ApplyForBenefitRequest(
        iin=mother.iin, kind=pb.BENEFIT_KIND_BIRTH_GRANT, child_iin=child
    )
    assert _error(lambda: stub.ApplyForBenefit(again)).code == "ALREADY_EXISTS"
    care = stub.ApplyForBenefit(
        pb.ApplyForBenefitRequest(iin=mother.iin, kind=pb.BENEFIT_KIND_CHILDCARE, child_iin=child)
    )
    assert care.end_date == childcare_end(TODAY).isoformat()
    assert care.monthly_tiyn == childcare_tiyn(TODAY.year, known + 1)
    listed = _benefits(stub, mother.iin)
    assert [b.benefit_id for b in listed[-2:]] == [grant.benefit_id, care.benefit_id]
    # The father may not claim the same child's grant again.
    father = WORLD.person(mother.spouse or 0)
    by_father = pb.ApplyForBenefitRequest(
        iin=father.iin, kind=pb.BENEFIT_KIND_BIRTH_GRANT, child_iin=child
    )
    assert _error(lambda: stub.ApplyForBenefit(by_father)).code == "ALREADY_EXISTS"


def test_applications_the_law_refuses(stub: pb_grpc.StateBenefitsStub) -> None:
    mother, children = _mother_of_young()
    eldest, youngest = children[0], children[-1]
    assert youngest.age(TODAY) < 14
    adult = next(p for p in WORLD.persons() if p.alive and 25 <= p.age(TODAY) <= 40)
    pensioner = next(
        p
        for p in WORLD.persons()
        if p.alive and retirement_date(p.birth_date, p.sex) < dt.date(2020, 1, 1)
    )
    two_years_old = newborn_iin(anniversary(TODAY, -2), 9702)
    future = (TODAY + dt.timedelta(days=1)).isoformat()

    def apply(iin: str, kind: int, child: str = "", day: str = "") -> pb.ApplyForBenefitRequest:
        return pb.ApplyForBenefitRequest(iin=iin, kind=kind, child_iin=child, application_date=day)

    k = pb
    cases = {
        "INVALID_REQUEST": [
            apply(mother.iin, k.BENEFIT_KIND_BIRTH_GRANT),
            apply(mother.iin, k.BENEFIT_KIND_CHILDCARE, mother.iin),
            apply(adult.iin, k.BENEFIT_KIND_DISABILITY, eldest.iin),
            apply(mother.iin, k.BENEFIT_KIND_FUNERAL_GRANT),
            apply(mother.iin, k.BENEFIT_KIND_UNSPECIFIED),
            apply(mother.iin, 42),
            apply(adult.iin, k.BENEFIT_KIND_DISABILITY, day=future),
            apply(adult.iin, k.BENEFIT_KIND_DISABILITY, day="2025-02-30"),
        ],
        "INVALID_IDENTIFIER": [
            apply(mother.iin, k.BENEFIT_KIND_BIRTH_GRANT, "123456789012"),
            apply("12345678901", k.BENEFIT_KIND_DISABILITY),
        ],
        "FAILED_PRECONDITION": [
            apply(mother.iin, k.BENEFIT_KIND_BIRTH_GRANT, two_years_old),
            apply(mother.iin, k.BENEFIT_KIND_CHILDCARE, two_years_old),
            apply(youngest.iin, k.BENEFIT_KIND_BIRTH_GRANT, newborn_iin(TODAY, 9704)),
            apply(adult.iin, k.BENEFIT_KIND_AGE_PENSION),
            apply(mother.iin, k.BENEFIT_KIND_LARGE_FAMILY),
            apply(mother.iin, k.BENEFIT_KIND_SURVIVOR, newborn_iin(anniversary(TODAY, -19), 9706)),
            apply(
                mother.iin,
                k.BENEFIT_KIND_CHILDCARE,
                newborn_iin(TODAY - dt.timedelta(days=3), 9708),
                (TODAY - dt.timedelta(days=5)).isoformat(),
            ),
        ],
        "ALREADY_EXISTS": [apply(pensioner.iin, k.BENEFIT_KIND_AGE_PENSION)],
    }
    before = {p: _benefits(stub, p) for p in (mother.iin, adult.iin, pensioner.iin)}
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.ApplyForBenefit(r)).code == code, request
    assert {p: _benefits(stub, p) for p in before} == before  # refusals change nothing


def test_pension_and_disability_applications(stub: pb_grpc.StateBenefitsStub) -> None:
    retiring = Iin.build(anniversary(TODAY, -63) - dt.timedelta(days=1), Sex.MALE, 9710)
    retiring = retiring or Iin.build(anniversary(TODAY, -63) - dt.timedelta(days=1), Sex.MALE, 9711)
    assert retiring is not None
    pension = stub.ApplyForBenefit(
        pb.ApplyForBenefitRequest(iin=retiring.value, kind=pb.BENEFIT_KIND_AGE_PENSION)
    )
    assert pension.status == PENDING and pension.monthly_tiyn == 0  # assessed on assignment
    too_early = Iin.build(anniversary(TODAY, -61) + dt.timedelta(days=1), Sex.FEMALE, 9710)
    too_early = too_early or Iin.build(
        anniversary(TODAY, -61) + dt.timedelta(days=1), Sex.FEMALE, 9711
    )
    assert too_early is not None
    early = pb.ApplyForBenefitRequest(iin=too_early.value, kind=pb.BENEFIT_KIND_AGE_PENSION)
    assert _error(lambda: stub.ApplyForBenefit(early)).code == "FAILED_PRECONDITION"
    adult = next(
        p
        for p in WORLD.persons()
        if p.alive
        and p.age(TODAY) >= 30
        and not any(b.kind == pb.BENEFIT_KIND_DISABILITY for b in _benefits(stub, p.iin))
    )
    request = pb.ApplyForBenefitRequest(iin=adult.iin, kind=pb.BENEFIT_KIND_DISABILITY)
    assert stub.ApplyForBenefit(request).status == PENDING
    assert _error(lambda: stub.ApplyForBenefit(request)).code == "ALREADY_EXISTS"
