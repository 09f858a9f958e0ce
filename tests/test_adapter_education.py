"""Education (kindergarten queue, schools) over real gRPC."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from adapters.population import InstitutionKind, Person, World
from adapters.sdk import RunningAdapter, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.education.v1 import education_pb2 as pb
from govbus.pb.agencies.education.v1 import education_pb2_grpc as pb_grpc

WORLD = World(seed=5, persons=2000)
TODAY = dt.date.today()
WAITING = pb.QUEUE_STATUS_WAITING


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db = tmp_path_factory.mktemp("education") / "education.db"
    agency = load("education")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.EducationRegistryStub:
    return pb_grpc.EducationRegistryStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value)


def _toddlers() -> list[Person]:
    return [p for p in WORLD.persons() if p.mother is not None and p.alive and p.age() < 6]


def _queue_of(stub: pb_grpc.EducationRegistryStub, city: str) -> dict[str, pb.QueueEntry]:
    entries = {}
    for child in _toddlers():
        entry = stub.GetQueueEntry(pb.GetQueueEntryRequest(child_iin=child.iin))
        if entry.city == city and entry.status == WAITING:
            entries[child.iin] = entry
    return entries


def _newborn(serial: int, sex: Sex = Sex.MALE) -> str:
    built = Iin.build(TODAY, sex, serial) or Iin.build(TODAY, sex, serial + 1)
    assert built is not None
    return built.value


def test_waiting_children_have_consecutive_positions(stub: pb_grpc.EducationRegistryStub) -> None:
    toddlers = _toddlers()
    assert toddlers, "the world must have small children"
    city = toddlers[0].address.city.name
    queue = _queue_of(stub, city)
    assert sorted(e.position for e in queue.values()) == list(range(1, len(queue) + 1))
    entry = stub.GetQueueEntry(pb.GetQueueEntryRequest(child_iin=toddlers[0].iin))
    expected = WORLD.institution_for(InstitutionKind.KINDERGARTEN, toddlers[0].address)
    assert entry.kindergarten_id == expected.id
    assert entry.applicant_iin == WORLD.person(toddlers[0].mother or 0).iin


def test_enqueue_then_withdraw_keeps_positions_right(stub: pb_grpc.EducationRegistryStub) -> None:
    toddler = _toddlers()[0]
    mother = WORLD.person(toddler.mother or 0)
    kindergarten = WORLD.institution_for(InstitutionKind.KINDERGARTEN, toddler.address)
    city = kindergarten.city.name
    waiting_before = len(_queue_of(stub, city))
    child = _newborn(9800)
    request = pb.EnqueueKindergartenRequest(
        child_iin=child, applicant_iin=mother.iin, kindergarten_id=kindergarten.id
    )
    entry = stub.EnqueueKindergarten(request)
    assert entry.status == WAITING and entry.applied_date == TODAY.isoformat()
    # Applied today in the general queue: behind everyone of the city except other newcomers.
    assert entry.position >= waiting_before + 1
    assert _error(lambda: stub.EnqueueKindergarten(request)).code == "ALREADY_EXISTS"

    priority = stub.EnqueueKindergarten(
        pb.EnqueueKindergartenRequest(
            child_iin=_newborn(9802, Sex.FEMALE),
            applicant_iin=mother.iin,
            kindergarten_id=kindergarten.id,
            priority=pb.PRIORITY_CATEGORY_DISABILITY,
        )
    )
    moved = stub.GetQueueEntry(pb.GetQueueEntryRequest(child_iin=child))
    assert priority.position < moved.position
    assert moved.position == entry.position + 1

    withdrawn = stub.WithdrawFromQueue(pb.WithdrawFromQueueRequest(child_iin=child, reason="x"))
    assert withdrawn.status == pb.QUEUE_STATUS_WITHDRAWN and withdrawn.position == 0
    again = pb.WithdrawFromQueueRequest(child_iin=child, reason="x")
    assert _error(lambda: stub.WithdrawFromQueue(again)).code == "FAILED_PRECONDITION"
    back = stub.EnqueueKindergarten(request)
    assert back.status == WAITING


def test_enqueue_rules(stub: pb_grpc.EducationRegistryStub) -> None:
    toddler = _toddlers()[1]
    mother = WORLD.person(toddler.mother or 0)
    kindergarten = WORLD.institution_for(InstitutionKind.KINDERGARTEN, toddler.address)
    older = next(p for p in WORLD.persons() if p.mother is not None and 7 <= p.age(TODAY) < 12)
    cases = {
        "FAILED_PRECONDITION": [
            pb.EnqueueKindergartenRequest(
                child_iin=older.iin, applicant_iin=mother.iin, kindergarten_id=kindergarten.id
            ),
            # The applicant cannot be a parent: born after the child.
            pb.EnqueueKindergartenRequest(
                child_iin=toddler.iin, applicant_iin=toddler.iin, kindergarten_id=kindergarten.id
            ),
        ],
        "NOT_FOUND": [
            pb.EnqueueKindergartenRequest(
                child_iin=_newborn(9810), applicant_iin=mother.iin, kindergarten_id="KG-XXX-001"
            )
        ],
        "INVALID_IDENTIFIER": [
            pb.EnqueueKindergartenRequest(
                child_iin="1" * 12, applicant_iin=mother.iin, kindergarten_id=kindergarten.id
            )
        ],
        "INVALID_REQUEST": [
            pb.EnqueueKindergartenRequest(
                child_iin=_newborn(9812),
                applicant_iin=mother.iin,
                kindergarten_id=kindergarten.id,
                priority=99,
            )
        ],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.EnqueueKindergarten(r)).code == code, code
    missing = pb.GetQueueEntryRequest(child_iin=_newborn(9810))
    assert _error(lambda: stub.GetQueueEntry(missing)).code == "NOT_FOUND"


def test_schools_and_kindergartens(stub: pb_grpc.EducationRegistryStub) -> None:
    pupil = next(
        p for p in WORLD.persons() if p.mother is not None and p.alive and 8 <= p.age() < 17
    )
    enrolment = stub.GetSchoolEnrolment(pb.GetSchoolEnrolmentRequest(iin=pupil.iin))
    school = WORLD.institution_for(InstitutionKind.SCHOOL, pupil.address)
    assert enrolment.school_id == school.id and enrolment.school_name == school.name
    assert enrolment.grade == min(11, pupil.age() - 5)
    city = pupil.address.city
    listed = list(stub.ListKindergartens(pb.ListKindergartensRequest(city=city.name)))
    expected = [i for i in WORLD.institutions(InstitutionKind.KINDERGARTEN) if i.city == city]
    assert [k.id for k in listed] == [i.id for i in expected]
    assert all(k.rca for k in listed)
