"""КГД (taxes) over real gRPC: taxpayers, debts and declarations match the world; filing keeps
the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.population import Company, Person, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from adapters.tax.data import (
    BUDGET_CODES,
    IIN_ERA,
    company_debts,
    entrepreneur_since,
    penalty_tiyn,
    person_debts,
    tax_office,
)
from govbus.errors import GovbusError, from_rpc_error
from govbus.pb.agencies.tax.v1 import tax_pb2 as pb
from govbus.pb.agencies.tax.v1 import tax_pb2_grpc as pb_grpc

WORLD = World(seed=14, persons=1200)
TODAY = dt.date.today()
PERSONS = list(WORLD.persons())
COMPANIES = list(WORLD.companies())


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("tax") / "tax.db"
    agency = load("tax")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.TaxServiceStub:
    return pb_grpc.TaxServiceStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _iin(person: Person) -> pb.TaxpayerId:
    return pb.TaxpayerId(iin=person.iin)


def _bin(company: Company) -> pb.TaxpayerId:
    return pb.TaxpayerId(bin=company.bin)


def _entrepreneurs() -> list[Person]:
    return [p for p in PERSONS if entrepreneur_since(WORLD, p) is not None]


def _individuals(skip: int = 0) -> Person:
    return [
        p for p in PERSONS if p.alive and p.age() >= 25 and entrepreneur_since(WORLD, p) is None
    ][skip]


def test_taxpayers_match_the_world(stub: pb_grpc.TaxServiceStub) -> None:
    for person in PERSONS[:80]:
        taxpayer = stub.GetTaxpayer(pb.GetTaxpayerRequest(id=_iin(person)))
        since = entrepreneur_since(WORLD, person)
        assert taxpayer.id.iin == person.iin
        assert taxpayer.tax_office == tax_office(person.address.city.name)
        if since is None:
            assert taxpayer.kind == pb.TAXPAYER_KIND_INDIVIDUAL
            assert taxpayer.name == person.full_name
            assert taxpayer.registered_date == str(max(person.birth_date, IIN_ERA))
        else:
            assert taxpayer.kind == pb.TAXPAYER_KIND_ENTREPRENEUR
            assert taxpayer.name == f"ИП {person.full_name}"
            assert taxpayer.registered_date == since.isoformat()
    for company in COMPANIES[:20]:
        taxpayer = stub.GetTaxpayer(pb.GetTaxpayerRequest(id=_bin(company)))
        assert (taxpayer.id.bin, taxpayer.name) == (company.bin, company.name)
        assert taxpayer.kind == pb.TAXPAYER_KIND_LEGAL_ENTITY
        assert taxpayer.registered_date == company.registered.isoformat()
        assert taxpayer.tax_office == tax_office(company.address.city.name)
    # About one adult of working age in nine is an entrepreneur.
    working = [p for p in PERSONS if p.alive and 20 <= p.age() < 63]
    assert 0.05 < len(_entrepreneurs()) / len(working) < 0.2


def test_debts_match_the_world_with_the_penalty_of_the_day(stub: pb_grpc.TaxServiceStub) -> None:
    debtors = 0
    for household in WORLD.households():
        for person in household.members:
            expected = person_debts(WORLD, person, household)
            status = stub.GetDebtStatus(pb.GetDebtStatusRequest(id=_iin(person)))
            assert status.as_of_date == TODAY.isoformat()
            assert status.has_debt == bool(expected)
            got = {(d.budget_code, d.since_date): d for d in status.debts}
            assert set(got) == {(d.budget_code, d.since.isoformat()) for d in expected}
            for debt in expected:
                answer = got[(debt.budget_code, debt.since.isoformat())]
                assert answer.principal_tiyn == debt.principal_tiyn
                assert answer.penalty_tiyn == penalty_tiyn(debt.principal_tiyn, debt.since, TODAY)
                assert (
                    answer.penalty_tiyn > 0
                    and answer.description == (BUDGET_CODES[debt.budget_code])
                )
            assert status.total_tiyn == sum(d.principal_tiyn + d.penalty_tiyn for d in status.debts)
            debtors += bool(expected)
            if expected and person.vehicles == 0:
                assert "104401" not in {d.budget_code for d in expected}
    # Most taxpayers owe nothing.
    assert 0 < debtors < len(PERSONS) * 0.15
    owing = [c for c in COMPANIES if company_debts(WORLD, c)]
    assert owing, "the test world needs a company with a debt"
    status = stub.GetDebtStatus(pb.GetDebtStatusRequest(id=_bin(owing[0])))
    assert status.has_debt and status.id.bin == owing[0].bin
    assert {d.budget_code for d in status.debts} <= {"101101", "105101", "103101"}
    liquidated = next(c for c in COMPANIES if c.liquidated is not None)
    assert not stub.GetDebtStatus(pb.GetDebtStatusRequest(id=_bin(liquidated))).has_debt


def test_declarations(stub: pb_grpc.TaxServiceStub) -> None:
    entrepreneur = _entrepreneurs()[0]
    declarations = list(stub.ListDeclarations(pb.ListDeclarationsRequest(id=_iin(entrepreneur))))
    simplified = [d for d in declarations if d.form == "910.00"]
    assert simplified and all(d.tax_tiyn == d.income_tiyn * 3 // 100 for d in simplified)
    assert all(d.id.iin == entrepreneur.iin for d in declarations)
    # The universal declaration: entrepreneurs from tax year 2023.
    assert {d.tax_year for d in declarations if d.form == "270.00"} <= {2023, 2024}
    year = simplified[0].tax_year
    one_year = stub.ListDeclarations(
        pb.ListDeclarationsRequest(id=_iin(entrepreneur), tax_year=year)
    )
    assert {d.tax_year for d in one_year} == {year}
    company = next(c for c in COMPANIES if c.liquidated is None and c.registered.year < 2020)
    corporate = list(stub.ListDeclarations(pb.ListDeclarationsRequest(id=_bin(company))))
    assert [d.tax_year for d in corporate] == [2022, 2023, 2024]
    assert {d.form for d in corporate} == {"100.00"}
    assert all(d.submitted_date[:4] == str(d.tax_year + 1) for d in corporate)
    bad_year = pb.ListDeclarationsRequest(id=_bin(company), tax_year=3000)
    assert _error(lambda: stub.ListDeclarations(bad_year)).code == "INVALID_REQUEST"


def test_submit_declarations(stub: pb_grpc.TaxServiceStub) -> None:
    person = _individuals()
    last_year = TODAY.year - 1
    request = pb.SubmitDeclarationRequest(
        id=_iin(person), form="270.00", tax_year=last_year, income_tiyn=5_000_000_00
    )
    declaration = stub.SubmitDeclaration(request)
    assert declaration.status == pb.DECLARATION_STATUS_UNDER_REVIEW
    assert (declaration.id.iin, declaration.submitted_date) == (person.iin, TODAY.isoformat())
    listed = stub.ListDeclarations(pb.ListDeclarationsRequest(id=_iin(person), tax_year=last_year))
    assert declaration.declaration_id in {d.declaration_id for d in listed}
    assert _error(lambda: stub.SubmitDeclaration(request)).code == "ALREADY_EXISTS"

    # The simplified declaration goes by half-year: the first half of last year is
    # declared in the world, the second one (due in February) is the one still open.
    entrepreneur = next(
        p
        for p in _entrepreneurs()
        if entrepreneur_since(WORLD, p) < dt.date(last_year, 1, 1)
        and all(
            d.status == pb.DECLARATION_STATUS_ACCEPTED
            for d in stub.ListDeclarations(
                pb.ListDeclarationsRequest(id=_iin(p), tax_year=last_year)
            )
        )
    )

    def simplified() -> list[pb.Declaration]:
        listed = stub.ListDeclarations(
            pb.ListDeclarationsRequest(id=_iin(entrepreneur), tax_year=last_year)
        )
        return [d for d in listed if d.form == "910.00"]

    assert len(simplified()) == 1
    half = pb.SubmitDeclarationRequest(
        id=_iin(entrepreneur),
        form="910.00",
        tax_year=last_year,
        income_tiyn=10_000_000_00,
        tax_tiyn=30_000_000,
    )
    second = stub.SubmitDeclaration(half)
    assert second.declaration_id[9] == "2"  # the period digit of the number
    assert len(simplified()) == 2
    assert _error(lambda: stub.SubmitDeclaration(half)).code == "ALREADY_EXISTS"

    company = next(c for c in COMPANIES if c.liquidated is None)
    corporate = stub.SubmitDeclaration(
        pb.SubmitDeclarationRequest(
            id=_bin(company), form="100.00", tax_year=last_year, income_tiyn=10**12, tax_tiyn=10**10
        )
    )
    assert corporate.id.bin == company.bin and corporate.form == "100.00"


def test_declaration_rules(stub: pb_grpc.TaxServiceStub) -> None:
    person = _individuals(skip=3)
    entrepreneur = _entrepreneurs()[1]
    young = next(c for c in COMPANIES if c.registered.year >= 2015)
    last_year = TODAY.year - 1
    liquidated = next(c for c in COMPANIES if c.liquidated and c.liquidated.year < last_year)
    dead = next(p for p in PERSONS if p.death_date is not None and p.death_date.year < 2024)

    def submit(taxpayer: pb.TaxpayerId, form: str = "270.00", **kw: Any) -> Any:
        fields: dict[str, Any] = {"id": taxpayer, "form": form, "tax_year": last_year}
        fields.update(kw)
        return pb.SubmitDeclarationRequest(**fields)

    cases = {
        "FAILED_PRECONDITION": [
            submit(_iin(person), "910.00"),  # an individual is no entrepreneur
            submit(_iin(person), "100.00"),
            submit(_bin(young), "100.00", tax_year=2010),  # before it was registered
            submit(_bin(young), "270.00"),
            submit(_bin(liquidated), "100.00"),  # deregistered when liquidated
            submit(_iin(dead), tax_year=last_year),  # deregistered at death
            submit(_iin(entrepreneur), "270.00", tax_year=TODAY.year),  # the year is not over
        ],
        "INVALID_REQUEST": [
            submit(_iin(person), "999.99"),
            submit(_iin(person), ""),
            submit(_iin(person), tax_year=0),
            submit(_iin(person), tax_year=TODAY.year + 1),
            submit(_iin(person), income_tiyn=100, tax_tiyn=200),
            submit(_iin(person), income_tiyn=-1),
        ],
        "NOT_FOUND": [submit(pb.TaxpayerId(iin=WORLD.unknown_iin()))],
        "INVALID_IDENTIFIER": [
            submit(pb.TaxpayerId()),
            submit(pb.TaxpayerId(iin=person.iin[:11] + str((int(person.iin[11]) + 1) % 10))),
            submit(pb.TaxpayerId(bin=person.iin)),
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.SubmitDeclaration(r)).code == code, request
    # Nothing was filed on the way.
    filed = stub.ListDeclarations(pb.ListDeclarationsRequest(id=_iin(person), tax_year=last_year))
    assert list(filed) == []


def test_reads_refuse_unknown_and_other_peoples_ids(stub: pb_grpc.TaxServiceStub) -> None:
    unknown = pb.TaxpayerId(iin=WORLD.unknown_iin())
    for call in (
        lambda: stub.GetTaxpayer(pb.GetTaxpayerRequest(id=unknown)),
        lambda: stub.GetDebtStatus(pb.GetDebtStatusRequest(id=unknown)),
        lambda: stub.ListDeclarations(pb.ListDeclarationsRequest(id=unknown)),
    ):
        assert _error(call).code == "NOT_FOUND"
    assert _error(lambda: stub.GetTaxpayer(pb.GetTaxpayerRequest())).code == "INVALID_IDENTIFIER"
    # The IIN inside `id` is the subject of the consent: someone else's is refused.
    owner, other = _individuals(0), _individuals(1)
    request = pb.GetDebtStatusRequest(id=_iin(owner))
    assert stub.GetDebtStatus(request, metadata=[("govbus-subject", owner.iin)]).id.iin == (
        owner.iin
    )
    refused = _error(lambda: stub.GetDebtStatus(request, metadata=[("govbus-subject", other.iin)]))
    assert refused.code == "CONSENT_SCOPE"


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("tax"), WORLD).raise_for_failures()
