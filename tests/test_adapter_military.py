"""Military registration over real gRPC: records match the world; writes keep the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.military.data import MilitaryRecord, military_record, office_of
from adapters.military.servicer import MilitaryRegistrationServicer
from adapters.military.store import MilitaryStore
from adapters.population import Person, World
from adapters.sdk import UNKNOWN_IIN, RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.military.v1 import military_pb2 as pb
from govbus.pb.agencies.military.v1 import military_pb2_grpc as pb_grpc

WORLD = World(seed=23, persons=1600)
TODAY = dt.date.today()
RECORDS = [(p, military_record(WORLD, p)) for p in WORLD.persons()]
S = pb.MilitaryStatus


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("military") / "military.db"
    agency = load("military")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.MilitaryRegistrationStub:
    return pb_grpc.MilitaryRegistrationStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _registered(test: Any) -> list[tuple[Person, MilitaryRecord]]:
    return [(p, r) for p, r in RECORDS if r is not None and test(p, r)]


def _boy(serial: int, born: dt.date) -> str:
    built = Iin.build(born, Sex.MALE, serial) or Iin.build(born, Sex.MALE, serial + 1)
    assert built is not None
    return built.value


def test_records_match_the_world(stub: pb_grpc.MilitaryRegistrationStub) -> None:
    men = [p for p, _ in RECORDS if p.sex is Sex.MALE and p.age(p.death_date or WORLD.today) >= 17]
    assert all(r is not None for p, r in RECORDS if p in men)
    women = [r for p, r in RECORDS if p.sex is Sex.FEMALE]
    assert sum(r is not None for r in women) < 0.03 * len(women)
    for person, record in _registered(lambda p, r: True)[:40]:
        got = stub.GetRecord(pb.GetRecordRequest(iin=person.iin))
        assert got.office == office_of(person.address.city) == record.office
        assert got.fitness_category == record.fitness and got.rank == record.rank
        assert got.registered_date == record.registered.isoformat()
        assert got.ticket_number == record.ticket
        if not person.alive:
            assert got.status == S.Value("MILITARY_STATUS_DEREGISTERED")
        periods = list(stub.ListServiceHistory(pb.ListServiceHistoryRequest(iin=person.iin)))
        assert [(p.from_date, p.kind) for p in periods] == [
            (x.start.isoformat(), x.kind) for x in record.periods
        ]
    too_young = next(p for p, r in RECORDS if r is None and p.alive and p.age() < 16)
    missing = pb.GetRecordRequest(iin=too_young.iin)
    assert _error(lambda: stub.GetRecord(missing)).code == "NOT_FOUND"


def test_status_is_computed_on_the_day(stub: pb_grpc.MilitaryRegistrationStub) -> None:
    veterans = _registered(lambda p, r: bool(r.periods) and p.alive and p.age(TODAY) < 50)
    assert veterans
    for person, record in veterans[:10]:
        serving = any(x.start <= TODAY < x.end for x in record.periods)
        expected = "IN_SERVICE" if serving else "RESERVE"
        got = stub.GetRecord(pb.GetRecordRequest(iin=person.iin))
        assert got.status == S.Value(f"MILITARY_STATUS_{expected}")
    for person, _ in _registered(
        lambda p, r: r.status == S.Value("MILITARY_STATUS_CONSCRIPT") and not r.periods
    )[:10]:
        got = stub.GetRecord(pb.GetRecordRequest(iin=person.iin))
        expected = "RESERVE" if person.age(TODAY) >= 27 else "CONSCRIPT"
        assert got.status == S.Value(f"MILITARY_STATUS_{expected}")


def test_a_seventeen_year_old_registers_then_moves(
    stub: pb_grpc.MilitaryRegistrationStub,
) -> None:
    born = dt.date(TODAY.year - 17, 2, 14)
    iin = _boy(9600, born)
    office = office_of(WORLD.person(0).address.city)
    record = stub.Register(pb.RegisterRequest(iin=iin, office=office))
    assert record.status == S.Value("MILITARY_STATUS_CONSCRIPT")
    assert record.registered_date == TODAY.isoformat() and record.ticket_number.startswith("ПС")
    again = pb.RegisterRequest(iin=iin, office=office)
    assert _error(lambda: stub.Register(again)).code == "ALREADY_EXISTS"
    moved = stub.Register(
        pb.RegisterRequest(iin=iin, office="Управление по делам обороны г. Атырау")
    )
    assert moved.office.endswith("Атырау") and moved.ticket_number == record.ticket_number
    assert not list(stub.ListServiceHistory(pb.ListServiceHistoryRequest(iin=iin)))

    # Moving abroad, then back: the same status again.
    gone = stub.Deregister(pb.DeregisterRequest(iin=iin, reason="moved abroad"))
    assert gone.status == S.Value("MILITARY_STATUS_DEREGISTERED")
    twice = pb.DeregisterRequest(iin=iin, reason="moved abroad")
    assert _error(lambda: stub.Deregister(twice)).code == "FAILED_PRECONDITION"
    back = stub.Register(pb.RegisterRequest(iin=iin, office=office))
    assert back.status == S.Value("MILITARY_STATUS_CONSCRIPT") and back.office == office


def test_registration_rules(stub: pb_grpc.MilitaryRegistrationStub) -> None:
    office = office_of(WORLD.person(0).address.city)
    fifteen = _boy(9610, dt.date(TODAY.year - 15, 6, 1))
    woman = next(p for p, r in RECORDS if r is None and p.sex is Sex.FEMALE and p.alive)
    old = next(p for p, r in RECORDS if p.sex is Sex.MALE and p.alive and p.age(TODAY) >= 55)
    unfit, _ = _registered(lambda p, r: r.status == S.Value("MILITARY_STATUS_NOT_LIABLE"))[0]
    dead, _ = _registered(lambda p, r: not p.alive and p.sex is Sex.MALE)[0]
    refused = {
        "FAILED_PRECONDITION": [fifteen, woman.iin, old.iin, unfit.iin, dead.iin],
        "INVALID_IDENTIFIER": ["123456789012", "", "9001013000"],
    }
    for code, iins in refused.items():
        for iin in iins:
            request = pb.RegisterRequest(iin=iin, office=office)
            assert _error(lambda r=request: stub.Register(r)).code == code, (code, iin)
    adult = _boy(9620, dt.date(TODAY.year - 30, 3, 3))
    no_office = pb.RegisterRequest(iin=adult, office=" ")
    assert _error(lambda: stub.Register(no_office)).code == "INVALID_REQUEST"
    future = pb.RegisterRequest(
        iin=adult, office=office, registered_date=(TODAY + dt.timedelta(days=3)).isoformat()
    )
    assert _error(lambda: stub.Register(future)).code == "INVALID_REQUEST"
    missing = pb.GetRecordRequest(iin=adult)
    assert _error(lambda: stub.GetRecord(missing)).code == "NOT_FOUND"
    # Over 27 and never served: straight to the reserve, with a military ID.
    late = stub.Register(pb.RegisterRequest(iin=adult, office=office))
    assert late.status == S.Value("MILITARY_STATUS_RESERVE") and late.ticket_number.startswith("ВБ")


def test_deregistration_rules(stub: pb_grpc.MilitaryRegistrationStub) -> None:
    reservists = _registered(
        lambda p, r: (
            p.alive
            and r.status == S.Value("MILITARY_STATUS_RESERVE")
            and 30 <= p.age(TODAY) < 45
            and not any(x.end > TODAY for x in r.periods)
        )
    )
    person, record = reservists[0]
    before = stub.GetRecord(pb.GetRecordRequest(iin=person.iin))
    cases = {
        "INVALID_REQUEST": [
            pb.DeregisterRequest(iin=person.iin, reason="bored"),
            pb.DeregisterRequest(iin=person.iin, reason=""),
            pb.DeregisterRequest(
                iin=person.iin,
                reason="moving",
                deregistered_date=(TODAY + dt.timedelta(days=1)).isoformat(),
            ),
        ],
        "FAILED_PRECONDITION": [
            pb.DeregisterRequest(iin=person.iin, reason="age"),
            pb.DeregisterRequest(iin=person.iin, reason="moving", deregistered_date="1990-01-01"),
        ],
        "NOT_FOUND": [pb.DeregisterRequest(iin=UNKNOWN_IIN, reason="moving")],
        "INVALID_IDENTIFIER": [pb.DeregisterRequest(iin="12345ABCDE12", reason="moving")],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.Deregister(r)).code == code, (code, request)
    assert stub.GetRecord(pb.GetRecordRequest(iin=person.iin)) == before

    unfit = stub.Deregister(pb.DeregisterRequest(iin=person.iin, reason="health"))
    assert unfit.status == S.Value("MILITARY_STATUS_NOT_LIABLE")
    assert unfit.fitness_category == "Д" and record.fitness != "Д"
    back = pb.RegisterRequest(iin=person.iin, office=record.office)
    assert _error(lambda: stub.Register(back)).code == "FAILED_PRECONDITION"


def test_on_the_worlds_date_soldiers_are_in_service(tmp_path: Path) -> None:
    """The same store read on the world's own date: who serves then is in service."""
    db = tmp_path / "military.db"
    agency = load("military")
    agency.populate(db, WORLD)
    store = MilitaryStore.open(db)
    servicer = MilitaryRegistrationServicer(store, today=lambda: WORLD.today)
    serving = _registered(
        lambda p, r: p.alive and any(x.start <= WORLD.today < x.end for x in r.periods)
    )
    assert serving, "the world must have soldiers in service"
    with RunningAdapter([(agency.add_servicer, servicer)]) as running:
        stub = pb_grpc.MilitaryRegistrationStub(running.channel())
        for soldier, _ in serving:
            got = stub.GetRecord(pb.GetRecordRequest(iin=soldier.iin))
            assert got.status == S.Value("MILITARY_STATUS_IN_SERVICE")
            leave = pb.DeregisterRequest(iin=soldier.iin, reason="moved abroad")
            assert _error(lambda r=leave: stub.Deregister(r)).code == "FAILED_PRECONDITION"
            move = pb.RegisterRequest(
                iin=soldier.iin, office="Управление по делам обороны г. Актау"
            )
            assert _error(lambda r=move: stub.Register(r)).code == "FAILED_PRECONDITION"
    store.close()


# Last: the kit's sample writes change the records the tests above read.
def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("military"), WORLD).raise_for_failures()
