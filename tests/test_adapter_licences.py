"""Driving licences over real gRPC: reads match the world; writes keep the registry's rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.licences.data import DrivingRecord, anniversary, driving_record
from adapters.licences.servicer import DrivingLicencesServicer
from adapters.licences.store import LicenceStore
from adapters.population import Person, World
from adapters.sdk import UNKNOWN_IIN, RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.pb.agencies.licences.v1 import licences_pb2 as pb
from govbus.pb.agencies.licences.v1 import licences_pb2_grpc as pb_grpc

WORLD = World(seed=11, persons=1200)
TODAY = dt.date.today()
RECORDS = [(p, driving_record(WORLD, p)) for p in WORLD.persons()]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("licences") / "licences.db"
    agency = load("licences")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.DrivingLicencesStub:
    return pb_grpc.DrivingLicencesStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.DrivingLicence):
            list(result)
    return from_rpc_error(failure.value)


def _holders(test: Any) -> list[tuple[Person, DrivingRecord]]:
    return [(p, r) for p, r in RECORDS if r is not None and test(p, r)]


def _deprived_now(record: DrivingRecord) -> bool:
    return any(d.start <= TODAY < d.until for d in record.deprivations)


def _valid_now(person: Person, record: DrivingRecord) -> bool:
    last = record.licences[-1]
    return person.alive and not _deprived_now(record) and last.expires >= TODAY


def _non_drivers(test: Any = lambda p: True) -> list[Person]:
    return [p for p, r in RECORDS if r is None and p.alive and test(p)]


def test_the_register_matches_the_world(stub: pb_grpc.DrivingLicencesStub) -> None:
    holders = _holders(lambda p, r: True)
    adults = [p for p, _ in RECORDS if p.age(p.death_date or WORLD.today) >= 18]
    # Realistic proportions: a good share of adults drive, nobody under 18 holds a licence.
    assert 0.3 < len(holders) / len(adults) < 0.6
    assert all(p.age(r.licences[0].issued) >= 18 for p, r in holders)
    for person, record in holders[:40]:
        current = stub.GetLicence(pb.GetLicenceRequest(iin=person.iin))
        last = record.licences[-1]
        assert current.number == last.number and current.iin == person.iin
        assert tuple(current.categories) == last.categories
        assert current.issued_date == last.issued.isoformat()
        assert current.expiry_date == anniversary(last.issued, 10).isoformat()
        history = list(stub.ListLicenceHistory(pb.ListLicenceHistoryRequest(iin=person.iin)))
        assert [h.number for h in history] == [lic.number for lic in record.licences]
        assert all(h.status == pb.LICENCE_STATUS_REPLACED for h in history[:-1])
        assert history[-1] == current
        if _valid_now(person, record):
            assert current.status == pb.LICENCE_STATUS_VALID
        elif not person.alive or last.expires < TODAY:
            assert current.status == pb.LICENCE_STATUS_EXPIRED


def test_nine_vehicle_owners_in_ten_hold_category_b() -> None:
    owners = [(p, r) for p, r in RECORDS if p.vehicles and p.alive]
    licensed = [r for _, r in owners if r is not None and "B" in r.licences[-1].categories]
    assert len(licensed) / len(owners) > 0.8


def test_a_deprived_driver_is_suspended_and_gets_no_new_licence(
    stub: pb_grpc.DrivingLicencesStub,
) -> None:
    person, record = next((p, r) for p, r in _holders(lambda p, r: p.alive and _deprived_now(r)))
    until = max(d.until for d in record.deprivations if d.start <= TODAY < d.until)
    current = stub.GetLicence(pb.GetLicenceRequest(iin=person.iin))
    if record.licences[-1].expires >= TODAY:
        assert current.status == pb.LICENCE_STATUS_SUSPENDED
        assert current.suspended_until == until.isoformat()
    replace = pb.ReplaceLicenceRequest(iin=person.iin, reason="lost")
    assert _error(lambda: stub.ReplaceLicence(replace)).code == "FAILED_PRECONDITION"
    issue = pb.IssueLicenceRequest(iin=person.iin, categories=["D"], exam_date=TODAY.isoformat())
    error = _error(lambda: stub.IssueLicence(issue))
    assert error.code == "FAILED_PRECONDITION"
    assert stub.GetLicence(pb.GetLicenceRequest(iin=person.iin)) == current


def test_a_deceased_holders_licence_is_annulled(stub: pb_grpc.DrivingLicencesStub) -> None:
    person, _ = next(iter(_holders(lambda p, r: not p.alive)))
    current = stub.GetLicence(pb.GetLicenceRequest(iin=person.iin))
    assert current.status == pb.LICENCE_STATUS_EXPIRED
    replace = pb.ReplaceLicenceRequest(iin=person.iin, reason="lost")
    error = _error(lambda: stub.ReplaceLicence(replace))
    assert error.code == "FAILED_PRECONDITION" and "deceased" in error.message


def test_issue_then_add_a_category(stub: pb_grpc.DrivingLicencesStub) -> None:
    person = _non_drivers(lambda p: 25 <= p.age(TODAY) < 60)[0]
    request = pb.IssueLicenceRequest(iin=person.iin, categories=["b"], exam_date=str(TODAY))
    issued = stub.IssueLicence(request)
    assert issued.status == pb.LICENCE_STATUS_VALID and list(issued.categories) == ["B"]
    # New numbers come from their own series, above every number of the world.
    assert issued.number.startswith("XA")
    assert issued.issued_date == TODAY.isoformat()
    assert issued.expiry_date == anniversary(TODAY, 10).isoformat()
    assert _error(lambda: stub.IssueLicence(request)).code == "ALREADY_EXISTS"

    trailer = pb.IssueLicenceRequest(iin=person.iin, categories=["CE"], exam_date=str(TODAY))
    assert _error(lambda: stub.IssueLicence(trailer)).code == "FAILED_PRECONDITION"
    lorry = pb.IssueLicenceRequest(iin=person.iin, categories=["C", "CE"], exam_date=str(TODAY))
    upgraded = stub.IssueLicence(lorry)
    assert list(upgraded.categories) == ["B", "C", "CE"] and upgraded.number != issued.number
    history = list(stub.ListLicenceHistory(pb.ListLicenceHistoryRequest(iin=person.iin)))
    assert [(h.number, h.status) for h in history] == [
        (issued.number, pb.LICENCE_STATUS_REPLACED),
        (upgraded.number, pb.LICENCE_STATUS_VALID),
    ]


def test_no_licence_for_a_minor(stub: pb_grpc.DrivingLicencesStub) -> None:
    teen = next(p for p in WORLD.persons() if p.alive and p.age(TODAY) == 16)
    car = pb.IssueLicenceRequest(iin=teen.iin, categories=["B"], exam_date=str(TODAY))
    error = _error(lambda: stub.IssueLicence(car))
    assert error.code == "FAILED_PRECONDITION" and "needs 18" in error.message
    assert _error(lambda: stub.GetLicence(pb.GetLicenceRequest(iin=teen.iin))).code == "NOT_FOUND"
    # A light motorcycle (A1) is allowed from 16.
    moped = pb.IssueLicenceRequest(iin=teen.iin, categories=["A1"], exam_date=str(TODAY))
    assert list(stub.IssueLicence(moped).categories) == ["A1"]
    young = next(p for p in _non_drivers(lambda p: 18 <= p.age(TODAY) < 21))
    bus = pb.IssueLicenceRequest(iin=young.iin, categories=["B", "D"], exam_date=str(TODAY))
    assert _error(lambda: stub.IssueLicence(bus)).code == "FAILED_PRECONDITION"


def test_replacement_rules(stub: pb_grpc.DrivingLicencesStub) -> None:
    valid = [
        (p, r)
        for p, r in _holders(_valid_now)
        if r.licences[-1].expires > TODAY + dt.timedelta(days=400)
    ]
    person, record = valid[1]
    early = pb.ReplaceLicenceRequest(iin=person.iin, reason="expired")
    assert _error(lambda: stub.ReplaceLicence(early)).code == "FAILED_PRECONDITION"
    lost = stub.ReplaceLicence(pb.ReplaceLicenceRequest(iin=person.iin, reason="Lost"))
    assert lost.number != record.licences[-1].number
    assert tuple(lost.categories) == record.licences[-1].categories
    assert lost.status == pb.LICENCE_STATUS_VALID
    previous = list(stub.ListLicenceHistory(pb.ListLicenceHistoryRequest(iin=person.iin)))[-2]
    assert previous.number == record.licences[-1].number
    assert previous.status == pb.LICENCE_STATUS_REPLACED

    lapsed = _holders(lambda p, r: p.alive and r.licences[-1].expires < TODAY)
    if lapsed:
        lapsed_person = lapsed[0][0]
        renewed = stub.ReplaceLicence(
            pb.ReplaceLicenceRequest(iin=lapsed_person.iin, reason="expired")
        )
        assert renewed.status in (pb.LICENCE_STATUS_VALID, pb.LICENCE_STATUS_SUSPENDED)


def test_bad_input_is_refused_and_changes_nothing(stub: pb_grpc.DrivingLicencesStub) -> None:
    person, _ = _holders(_valid_now)[0]
    learner = _non_drivers(lambda p: 30 <= p.age(TODAY) < 60)[1]
    before = stub.GetLicence(pb.GetLicenceRequest(iin=person.iin))
    old_exam = (TODAY - dt.timedelta(days=400)).isoformat()
    future = (TODAY + dt.timedelta(days=1)).isoformat()
    cases = {
        "INVALID_IDENTIFIER": [
            pb.IssueLicenceRequest(iin="123456789012", categories=["B"], exam_date=str(TODAY)),
            pb.IssueLicenceRequest(iin="", categories=["B"], exam_date=str(TODAY)),
        ],
        "INVALID_REQUEST": [
            pb.IssueLicenceRequest(iin=learner.iin, categories=[], exam_date=str(TODAY)),
            pb.IssueLicenceRequest(iin=learner.iin, categories=["Z"], exam_date=str(TODAY)),
            pb.IssueLicenceRequest(iin=learner.iin, categories=["B"], exam_date=future),
            pb.IssueLicenceRequest(iin=learner.iin, categories=["B"], exam_date="01.02.2026"),
            pb.IssueLicenceRequest(iin=learner.iin, categories=["B"]),
        ],
        "FAILED_PRECONDITION": [
            pb.IssueLicenceRequest(iin=learner.iin, categories=["B"], exam_date=old_exam),
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.IssueLicence(r)).code == code, (code, request)
    assert _error(lambda: stub.GetLicence(pb.GetLicenceRequest(iin=learner.iin))).code == (
        "NOT_FOUND"
    )
    for reason in ("", "because", "x" * 100):
        request = pb.ReplaceLicenceRequest(iin=person.iin, reason=reason)
        assert _error(lambda r=request: stub.ReplaceLicence(r)).code == "INVALID_REQUEST"
    assert stub.GetLicence(pb.GetLicenceRequest(iin=person.iin)) == before

    unknown = [
        lambda: stub.GetLicence(pb.GetLicenceRequest(iin=UNKNOWN_IIN)),
        lambda: stub.ListLicenceHistory(pb.ListLicenceHistoryRequest(iin=UNKNOWN_IIN)),
        lambda: stub.ReplaceLicence(pb.ReplaceLicenceRequest(iin=UNKNOWN_IIN, reason="lost")),
    ]
    for call in unknown:
        assert _error(call).code == "NOT_FOUND"
    bad = pb.ListLicenceHistoryRequest(iin="12345ABCDE12")
    assert _error(lambda: stub.ListLicenceHistory(bad)).code == "INVALID_IDENTIFIER"


def test_on_the_worlds_date_the_deprived_are_suspended(tmp_path: Path) -> None:
    """The same store read on the world's own date: every deprivation then in force shows."""
    db = tmp_path / "licences.db"
    agency = load("licences")
    agency.populate(db, WORLD)
    store = LicenceStore.open(db)
    day = WORLD.today
    servicer = DrivingLicencesServicer(store, today=lambda: day)
    deprived = _holders(
        lambda p, r: p.alive and any(d.start <= day < d.until for d in r.deprivations)
    )
    assert deprived
    with RunningAdapter([(agency.add_servicer, servicer)]) as running:
        stub = pb_grpc.DrivingLicencesStub(running.channel())
        for person, record in deprived:
            got = stub.GetLicence(pb.GetLicenceRequest(iin=person.iin))
            if record.licences[-1].expires >= day:
                assert got.status == pb.LICENCE_STATUS_SUSPENDED
                assert got.suspended_until == record.deprivations[0].until.isoformat()
            else:
                assert got.status == pb.LICENCE_STATUS_EXPIRED
    store.close()


# Last: the kit's sample writes change the records the tests above read.
def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("licences"), WORLD).raise_for_failures()
