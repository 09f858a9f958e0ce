"""ЕНПФ over real gRPC: accounts, the statement of contributions, opening an account."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.pension.data import retirement_age, window
from adapters.population import Person, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.pension.v1 import pension_pb2 as pb
from govbus.pb.agencies.pension.v1 import pension_pb2_grpc as pb_grpc

WORLD = World(seed=13, persons=1200)
TODAY = dt.date.today()
PERIODS = [f"{y:04d}-{m + 1:02d}" for y, m in window(WORLD.today)]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("pension") / "pension.db"
    agency = load("pension")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.PensionFundStub:
    return pb_grpc.PensionFundStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.PensionAccount):
            list(result)
    return from_rpc_error(failure.value)


def _retired(person: Person) -> bool:
    return person.age(WORLD.today) >= retirement_age(person.sex)


def _employees() -> list[Person]:
    return [p for p in WORLD.persons() if p.alive and p.employer is not None and not _retired(p)]


def _statement(stub: pb_grpc.PensionFundStub, iin: str, **kw: str) -> list[pb.Contribution]:
    return list(stub.ListContributions(pb.ListContributionsRequest(iin=iin, **kw)))


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("pension"), WORLD).raise_for_failures()


def test_an_employers_monthly_contributions(stub: pb_grpc.PensionFundStub) -> None:
    checked = 0
    for person in _employees()[:150]:
        statement = _statement(stub, person.iin)
        if not statement:
            continue  # hired in the last month: nothing paid yet
        employer = WORLD.company(person.employer or 0)
        mandatory = [c for c in statement if c.kind == pb.CONTRIBUTION_KIND_MANDATORY]
        assert {c.agent_bin for c in statement} == {employer.bin}
        # Every month since the person was hired, up to the last period paid.
        periods = [c.period for c in mandatory]
        assert periods == PERIODS[PERIODS.index(periods[0]) :]
        for c in statement:
            year, month = int(c.period[:4]), int(c.period[5:])
            paid = dt.date.fromisoformat(c.paid_date)
            assert (paid.year, paid.month) == (year + (month == 12), month % 12 + 1)
            assert 5 <= paid.day <= 25 and c.iin == person.iin
        # ОПВ is 10 % of a salary between the minimum wage and the 50-wage cap.
        assert all(85_000 * 10 * 50 // 100 <= c.amount_tiyn <= 4_250_000 * 10 for c in mandatory)
        employer_paid = [c for c in statement if c.kind == pb.CONTRIBUTION_KIND_EMPLOYER]
        if person.birth_date < dt.date(1975, 1, 1):
            assert employer_paid == []
        else:
            assert {c.period[:4] for c in employer_paid} <= {"2024", "2025"}
            assert len(employer_paid) == len([p for p in periods if p >= "2024-01"])
        account = stub.GetAccount(pb.GetAccountRequest(iin=person.iin))
        assert account.last_contribution_date == statement[-1].paid_date
        assert account.balance_tiyn >= sum(c.amount_tiyn for c in statement)
        assert account.opened_date <= statement[0].paid_date
        checked += 1
    assert checked >= 100


def test_who_has_an_account(stub: pb_grpc.PensionFundStub) -> None:
    counts = {"child": 0, "dead": 0, "retired": 0, "retired paying": 0, "voluntary": 0}
    opened_by_the_kit = {r.iin for r in load("pension").samples(WORLD).valid["OpenAccount"]}
    for person in WORLD.persons():
        if person.iin in opened_by_the_kit:
            continue
        request = pb.GetAccountRequest(iin=person.iin)
        if not person.alive or person.age(WORLD.today) < 18:
            assert _error(lambda r=request: stub.GetAccount(r)).code == "NOT_FOUND"
            counts["dead" if not person.alive else "child"] += 1
            continue
        if _retired(person):
            try:
                stub.GetAccount(request)
            except grpc.RpcError:
                continue
            counts["retired"] += 1
            counts["retired paying"] += len(_statement(stub, person.iin)) > 0
        elif person.employer is None:
            try:
                statement = _statement(stub, person.iin)
            except grpc.RpcError:
                continue
            voluntary = [c for c in statement if c.kind == pb.CONTRIBUTION_KIND_VOLUNTARY]
            assert len(voluntary) == len(statement)
            assert all(c.agent_bin == "" for c in statement)
            counts["voluntary"] += bool(statement)
    assert counts["child"] and counts["dead"] and counts["retired"] and counts["voluntary"]
    assert counts["retired paying"] == 0


def test_statement_periods(stub: pb_grpc.PensionFundStub) -> None:
    person = next(p for p in _employees() if len(_statement(stub, p.iin)) >= 2 * 12)
    everything = _statement(stub, person.iin)
    year = _statement(stub, person.iin, from_period="2025-01", to_period="2025-12")
    assert year == [c for c in everything if c.period.startswith("2025")]
    one = _statement(stub, person.iin, from_period=PERIODS[-1], to_period=PERIODS[-1])
    assert {c.period for c in one} == {PERIODS[-1]}
    assert _statement(stub, person.iin, to_period="2000-01") == []
    for bad in (
        {"from_period": "2025-13"},
        {"from_period": "2025-1"},
        {"to_period": "25-01"},
        {"to_period": "２０２５-01"},
        {"from_period": "2025-06", "to_period": "2025-05"},
    ):
        code = _error(lambda b=bad: _statement(stub, person.iin, **b)).code
        assert code == "INVALID_REQUEST", bad


def test_opening_an_account(stub: pb_grpc.PensionFundStub) -> None:
    child = next(p for p in WORLD.persons() if p.alive and 16 <= p.age(WORLD.today) < 18)
    account = stub.OpenAccount(pb.OpenAccountRequest(iin=child.iin))
    assert account.iin == child.iin and account.opened_date == TODAY.isoformat()
    assert account.balance_tiyn == 0 and account.last_contribution_date == ""
    assert int(account.account_number) >= 9_000_000_000
    assert stub.GetAccount(pb.GetAccountRequest(iin=child.iin)) == account
    assert _statement(stub, child.iin) == []
    again = pb.OpenAccountRequest(iin=child.iin)
    assert _error(lambda: stub.OpenAccount(again)).code == "ALREADY_EXISTS"
    employee = pb.OpenAccountRequest(iin=_employees()[0].iin)
    assert _error(lambda: stub.OpenAccount(employee)).code == "ALREADY_EXISTS"
    # A newborn the fund has never seen gets the next number.
    newborn = Iin.build(TODAY, Sex.FEMALE, 9500) or Iin.build(TODAY, Sex.FEMALE, 9501)
    assert newborn is not None
    second = stub.OpenAccount(pb.OpenAccountRequest(iin=newborn.value))
    assert int(second.account_number) == int(account.account_number) + 1
    unborn = Iin.build(TODAY + dt.timedelta(days=40), Sex.MALE, 9500) or Iin.build(
        TODAY + dt.timedelta(days=40), Sex.MALE, 9501
    )
    assert unborn is not None
    refused = pb.OpenAccountRequest(iin=unborn.value)
    assert _error(lambda: stub.OpenAccount(refused)).code == "FAILED_PRECONDITION"
    assert _error(lambda: stub.GetAccount(pb.GetAccountRequest(iin=unborn.value))).code == (
        "NOT_FOUND"
    )


def test_bad_and_unknown_persons(stub: pb_grpc.PensionFundStub) -> None:
    for bad in ("", "123456789012", "12345678901", "90010130000X"):
        assert _error(lambda b=bad: stub.GetAccount(pb.GetAccountRequest(iin=b))).code == (
            "INVALID_IDENTIFIER"
        )
        assert _error(lambda b=bad: stub.OpenAccount(pb.OpenAccountRequest(iin=b))).code == (
            "INVALID_IDENTIFIER"
        )
    unknown = WORLD.unknown_iin()
    assert _error(lambda: _statement(stub, unknown)).code == "NOT_FOUND"
    # The consent's subject is someone else: the adapter refuses before reading.
    employee = _employees()[0]
    other = _employees()[1].iin
    call = lambda: stub.GetAccount(  # noqa: E731
        pb.GetAccountRequest(iin=employee.iin), metadata=[("govbus-subject", other)]
    )
    assert _error(call).code == "CONSENT_SCOPE"
