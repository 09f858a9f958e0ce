"""Courts and the register of debtors over real gRPC: reads match the world; closing keeps rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.courts.data import (
    RESTRICTION_TRAVEL,
    Case,
    Proceeding,
    company_records,
    household_records,
)
from adapters.licences.data import deprivations_of
from adapters.population import World
from adapters.sdk import UNKNOWN_IIN, RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.pb.agencies.courts.v1 import courts_pb2 as pb
from govbus.pb.agencies.courts.v1 import courts_pb2_grpc as pb_grpc

WORLD = World(seed=13, persons=1600)
TODAY = dt.date.today()
OPEN, CLOSED = pb.PROCEEDING_STATUS_OPEN, pb.PROCEEDING_STATUS_CLOSED
CASES: list[Case] = []
PROCEEDINGS: list[Proceeding] = []
for _household in WORLD.households():
    _c, _p = household_records(WORLD, _household)
    CASES += _c
    PROCEEDINGS += _p
for _company in WORLD.companies():
    _c, _p = company_records(WORLD, _company)
    CASES += _c
    PROCEEDINGS += _p


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("courts") / "courts.db"
    agency = load("courts")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.EnforcementRegisterStub:
    return pb_grpc.EnforcementRegisterStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _party(value: str) -> pb.Party:
    return pb.Party(bin=value) if value[4] in "456" else pb.Party(iin=value)


def _status(stub: pb_grpc.EnforcementRegisterStub, value: str) -> pb.DebtorStatus:
    return stub.GetDebtorStatus(pb.GetDebtorStatusRequest(party=_party(value)))


def test_debtor_status_and_proceedings_match_the_world(
    stub: pb_grpc.EnforcementRegisterStub,
) -> None:
    debtors = sorted({p.debtor for p in PROCEEDINGS})
    adults = [p for p in WORLD.persons() if p.alive and p.age() >= 18]
    active = {p.debtor for p in PROCEEDINGS if p.status != CLOSED and p.debtor[4] not in "456"}
    # Realistic proportions: most adults are not debtors, a few in a hundred are.
    assert 0.03 < len(active & {p.iin for p in adults}) / len(adults) < 0.2
    for debtor in debtors[:60]:
        own = [p for p in PROCEEDINGS if p.debtor == debtor]
        live = [p for p in own if p.status != CLOSED]
        status = _status(stub, debtor)
        assert status.is_debtor == bool(live)
        assert status.open_proceedings == len(live)
        assert status.total_tiyn == sum(p.amount_tiyn for p in live)
        assert status.travel_ban == any(
            p.status == OPEN and RESTRICTION_TRAVEL in p.restrictions for p in live
        )
        listed = list(stub.ListProceedings(pb.ListProceedingsRequest(party=_party(debtor))))
        assert sorted(p.number for p in listed) == sorted(p.number for p in own)
        opened = list(
            stub.ListProceedings(pb.ListProceedingsRequest(party=_party(debtor), open_only=True))
        )
        assert sorted(p.number for p in opened) == sorted(p.number for p in live)
        for proceeding in listed:
            assert proceeding.amount_tiyn > 0 and proceeding.officer and proceeding.creditor
            assert bool(proceeding.closed_date) == (proceeding.status == CLOSED)
            assert (proceeding.status == CLOSED) <= (not proceeding.restrictions)


def test_travel_ban_follows_the_law_on_enforcement() -> None:
    for p in PROCEEDINGS:
        if p.status == OPEN and p.amount_tiyn > 40 * 4_325_00:
            assert RESTRICTION_TRAVEL in p.restrictions
        if p.status != OPEN:
            assert RESTRICTION_TRAVEL not in p.restrictions


def _cases(stub: pb_grpc.EnforcementRegisterStub, value: str) -> dict[str, pb.CourtCase]:
    found = stub.ListCourtCases(pb.ListCourtCasesRequest(party=_party(value)))
    return {c.case_number: c for c in found}


def test_a_court_divorce_precedes_the_zags_dissolution(
    stub: pb_grpc.EnforcementRegisterStub,
) -> None:
    checked = 0
    for household in WORLD.households():
        marriage = household.marriage
        if marriage is None or marriage.divorced is None:
            continue
        husband, wife = household.members[:2]
        minors = [
            c
            for c in household.members[2:]
            if c.birth_date < marriage.divorced and c.age(marriage.divorced) < 18
        ]
        his, hers = _cases(stub, husband.iin), _cases(stub, wife.iin)
        shared = his.keys() & hers.keys()
        # With minor children a marriage is dissolved by a court, without by ЗАГС alone.
        assert len(shared) == (1 if minors else 0)
        if shared:
            (number,) = shared
            assert {his[number].role, hers[number].role} == {
                pb.PARTY_ROLE_PLAINTIFF,
                pb.PARTY_ROLE_DEFENDANT,
            }
            assert his[number].kind == pb.CASE_KIND_CIVIL
            assert his[number].decision_date < marriage.divorced.isoformat()
            checked += 1
    assert checked >= 3


def test_deprivations_are_the_licence_registers(stub: pb_grpc.EnforcementRegisterStub) -> None:
    drivers = [(p, deprivations_of(WORLD, p)) for p in WORLD.persons()]
    deprived = [(p, d) for p, d in drivers if d]
    assert deprived
    for person, (deprivation,) in deprived[:10]:
        cases = list(stub.ListCourtCases(pb.ListCourtCasesRequest(party=_party(person.iin))))
        admin = [c for c in cases if c.kind == pb.CASE_KIND_ADMINISTRATIVE]
        assert len(admin) == 1 and admin[0].role == pb.PARTY_ROLE_DEFENDANT
        assert admin[0].decision_date == (deprivation.start - dt.timedelta(days=10)).isoformat()


def test_companies_are_parties_by_bin(stub: pb_grpc.EnforcementRegisterStub) -> None:
    disputes = [c for c in CASES if all(party[4] in "456" for party, _ in c.parties)]
    assert disputes, "the world must have economic disputes"
    case = disputes[0]
    (plaintiff, _), (defendant, _) = case.parties
    for party, role in ((plaintiff, pb.PARTY_ROLE_PLAINTIFF), (defendant, pb.PARTY_ROLE_DEFENDANT)):
        found = list(stub.ListCourtCases(pb.ListCourtCasesRequest(party=_party(party))))
        assert (case.number, role) in {(c.case_number, c.role) for c in found}
    names = {c.bin: c.name for c in WORLD.companies()}
    by_number = {c.number: c for c in CASES}
    for debt in [p for p in PROCEEDINGS if p.debtor_is_company][:5]:
        listed = list(stub.ListProceedings(pb.ListProceedingsRequest(party=_party(debt.debtor))))
        assert [p.debtor.bin for p in listed] == [debt.debtor]
        # The creditor is the company that won the economic dispute the proceeding enforces.
        (creditor, role), _ = by_number[debt.basis].parties
        assert role == pb.PARTY_ROLE_PLAINTIFF and listed[0].creditor == names[creditor]


def test_close_a_proceeding_lifts_its_restrictions(stub: pb_grpc.EnforcementRegisterStub) -> None:
    by_debtor: dict[str, list[Proceeding]] = {}
    for p in PROCEEDINGS:
        by_debtor.setdefault(p.debtor, []).append(p)
    target = next(
        p
        for p in PROCEEDINGS
        if p.status == OPEN
        and RESTRICTION_TRAVEL in p.restrictions
        and not p.debtor_is_company
        and sum(q.status != CLOSED for q in by_debtor[p.debtor]) == 1
    )
    assert _status(stub, target.debtor).travel_ban
    closed = stub.CloseProceeding(pb.CloseProceedingRequest(number=target.number, reason="paid"))
    assert closed.status == CLOSED and closed.closed_date == TODAY.isoformat()
    assert not closed.restrictions
    status = _status(stub, target.debtor)
    assert not status.is_debtor and not status.travel_ban and status.total_tiyn == 0
    again = pb.CloseProceedingRequest(number=target.number, reason="paid")
    assert _error(lambda: stub.CloseProceeding(again)).code == "FAILED_PRECONDITION"


def test_bad_closings_are_refused_and_change_nothing(
    stub: pb_grpc.EnforcementRegisterStub,
) -> None:
    target = [p for p in PROCEEDINGS if p.status == OPEN and not p.debtor_is_company][1]
    before = _status(stub, target.debtor)
    early = (target.opened - dt.timedelta(days=1)).isoformat()
    future = (TODAY + dt.timedelta(days=1)).isoformat()
    region = target.number[:2]
    cases = {
        "INVALID_IDENTIFIER": [
            pb.CloseProceedingRequest(number="", reason="paid"),
            pb.CloseProceedingRequest(number="02-25-12345", reason="paid"),
            pb.CloseProceedingRequest(number="ИП-02-25-000000001", reason="paid"),
        ],
        "INVALID_REQUEST": [
            pb.CloseProceedingRequest(number=target.number, reason=""),
            pb.CloseProceedingRequest(number=target.number, reason="tired"),
            pb.CloseProceedingRequest(number=target.number, reason="paid", closed_date=future),
            pb.CloseProceedingRequest(number=target.number, reason="paid", closed_date="2025"),
        ],
        "NOT_FOUND": [pb.CloseProceedingRequest(number=f"{region}-25-999999998", reason="paid")],
        "FAILED_PRECONDITION": [
            pb.CloseProceedingRequest(number=target.number, reason="paid", closed_date=early),
            pb.CloseProceedingRequest(number=target.number, reason="debtor liquidated"),
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.CloseProceeding(r)).code == code, (code, request)
    assert _status(stub, target.debtor) == before


def test_identifiers_and_unknown_parties(stub: pb_grpc.EnforcementRegisterStub) -> None:
    nobody = _status(stub, UNKNOWN_IIN)
    assert not nobody.is_debtor and nobody.open_proceedings == 0 and not nobody.travel_ban
    assert nobody.party.iin == UNKNOWN_IIN
    assert not list(stub.ListProceedings(pb.ListProceedingsRequest(party=_party(UNKNOWN_IIN))))
    assert not list(stub.ListCourtCases(pb.ListCourtCasesRequest(party=_party(UNKNOWN_IIN))))
    bad = [
        pb.Party(iin="123456789012"),
        pb.Party(iin="12345"),
        pb.Party(bin="991340000001"),  # month 13
        pb.Party(bin=WORLD.person(0).iin),  # an IIN is not a BIN
        pb.Party(),
    ]
    for party in bad:
        request = pb.GetDebtorStatusRequest(party=party)
        assert _error(lambda r=request: stub.GetDebtorStatus(r)).code == "INVALID_IDENTIFIER"
        listing = pb.ListCourtCasesRequest(party=party)
        assert _error(lambda r=listing: stub.ListCourtCases(r)).code == "INVALID_IDENTIFIER"


def test_a_consent_covers_only_its_subject(stub: pb_grpc.EnforcementRegisterStub) -> None:
    subject, other = WORLD.person(0).iin, WORLD.person(1).iin
    metadata = (("govbus-subject", subject),)
    own = stub.GetDebtorStatus(pb.GetDebtorStatusRequest(party=_party(subject)), metadata=metadata)
    assert own.party.iin == subject
    request = pb.ListProceedingsRequest(party=_party(other))
    error = _error(lambda: stub.ListProceedings(request, metadata=metadata))
    assert error.code == "CONSENT_SCOPE"


# Last: the kit's sample writes change the records the tests above read.
def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("courts"), WORLD).raise_for_failures()
