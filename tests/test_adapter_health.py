"""The health registry over real gRPC: attachment, vaccinations, clinics and their rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.health.vaccines import SCHEDULE, VACCINES
from adapters.population import InstitutionKind, Person, World
from adapters.sdk import RunningAdapter, check_agency, load, run_agency
from govbus.errors import GovbusError, from_rpc_error
from govbus.ids import Iin, Sex
from govbus.pb.agencies.health.v1 import health_pb2 as pb
from govbus.pb.agencies.health.v1 import health_pb2_grpc as pb_grpc

WORLD = World(seed=19, persons=1200)
TODAY = dt.date.today()
CLINIC = InstitutionKind.CLINIC


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAdapter]:
    db: Path = tmp_path_factory.mktemp("health") / "health.db"
    agency = load("health")
    agency.populate(db, WORLD)
    with run_agency(agency, db) as adapter:
        yield adapter


@pytest.fixture
def stub(running: RunningAdapter) -> pb_grpc.HealthRegistryStub:
    return pb_grpc.HealthRegistryStub(running.channel())


def _error(call: Any) -> GovbusError:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not isinstance(result, pb.Attachment | pb.Vaccination):
            list(result)
    return from_rpc_error(failure.value)


def _vaccinations(stub: pb_grpc.HealthRegistryStub, iin: str) -> list[pb.Vaccination]:
    return list(stub.ListVaccinations(pb.ListVaccinationsRequest(iin=iin)))


def _newborn(serial: int, day: dt.date = TODAY) -> str:
    built = Iin.build(day, Sex.FEMALE, serial) or Iin.build(day, Sex.FEMALE, serial + 1)
    assert built is not None
    return built.value


def test_contract_kit_passes(running: RunningAdapter) -> None:
    check_agency(running.channel(), load("health"), WORLD).raise_for_failures()


def test_the_living_are_attached_to_a_clinic_of_their_city(
    stub: pb_grpc.HealthRegistryStub,
) -> None:
    serving = 0
    persons = list(WORLD.persons())
    for person in persons:
        request = pb.GetAttachmentRequest(iin=person.iin)
        if not person.alive:
            assert _error(lambda r=request: stub.GetAttachment(r)).code == "NOT_FOUND"
            continue
        attachment = stub.GetAttachment(request)
        clinic = next(c for c in WORLD.institutions(CLINIC) if c.id == attachment.clinic_id)
        assert clinic.city == person.address.city and attachment.clinic_name == clinic.name
        assert attachment.attached_date >= person.registered_since.isoformat()
        role = "педиатр" if person.age(TODAY) < 18 else "врач общей практики"
        assert f", {role}, участок №" in attachment.district_doctor
        serving += clinic == WORLD.institution_for(CLINIC, person.address)
    alive = sum(p.alive for p in persons)
    assert 0.85 * alive <= serving < alive  # most keep the clinic of their street


def test_children_are_vaccinated_by_the_calendar(stub: pb_grpc.HealthRegistryStub) -> None:
    children = [
        p
        for p in WORLD.persons()
        if p.alive
        and p.mother is not None
        and dt.date(2010, 1, 1) <= p.birth_date
        and p.age(WORLD.today) >= 7
    ]
    assert len(children) >= 30
    complete = 0
    for child in children:
        doses = _vaccinations(stub, child.iin)
        given = {(v.vaccine_code, v.dose) for v in doses}
        assert {("BCG", 1), ("HEPB", 1)} <= given
        for v in doses:
            assert child.birth_date.isoformat() <= v.given_date < WORLD.today.isoformat()
            assert v.vaccine_name == VACCINES[v.vaccine_code].name and v.iin == child.iin
        by_code: dict[str, list[pb.Vaccination]] = {}
        for v in doses:
            by_code.setdefault(v.vaccine_code, []).append(v)
        for code, shots in by_code.items():
            assert sorted(s.dose for s in shots) == list(range(1, len(shots) + 1)), code
        complete += {(d.code, d.dose) for d in SCHEDULE if d.age_days < 7 * 365} <= given
    assert complete >= 0.9 * len(children)


def test_clinics(stub: pb_grpc.HealthRegistryStub) -> None:
    everything = list(stub.ListClinics(pb.ListClinicsRequest()))
    assert {c.clinic_id for c in everything} == {c.id for c in WORLD.institutions(CLINIC)}
    city = WORLD.person(0).address.city
    listed = list(stub.ListClinics(pb.ListClinicsRequest(city=city.name)))
    assert listed and all(c.city == city.name and len(c.rca) == 16 for c in listed)
    unknown = pb.ListClinicsRequest(city="Атлантида")
    assert _error(lambda: stub.ListClinics(unknown)).code == "NOT_FOUND"


def test_a_newborn_is_attached_and_vaccinated(stub: pb_grpc.HealthRegistryStub) -> None:
    mother = next(p for p in WORLD.persons() if p.alive and p.sex is Sex.FEMALE and p.age() < 40)
    clinic = stub.GetAttachment(pb.GetAttachmentRequest(iin=mother.iin)).clinic_id
    child = _newborn(9600, TODAY - dt.timedelta(days=70))
    attached = stub.AttachToClinic(pb.AttachToClinicRequest(iin=child, clinic_id=clinic))
    assert attached.attached_date == TODAY.isoformat() and "педиатр" in attached.district_doctor
    assert stub.GetAttachment(pb.GetAttachmentRequest(iin=child)) == attached
    again = pb.AttachToClinicRequest(iin=child, clinic_id=clinic)
    assert _error(lambda: stub.AttachToClinic(again)).code == "ALREADY_EXISTS"

    def dose(code: str, n: int, days_ago: int) -> pb.RecordVaccinationRequest:
        day = (TODAY - dt.timedelta(days=days_ago)).isoformat()
        return pb.RecordVaccinationRequest(
            iin=child, vaccine_code=code, dose=n, given_date=day, clinic_id=clinic
        )

    first = stub.RecordVaccination(dose("hepb", 1, 69))
    assert first.vaccine_code == "HEPB" and first.vaccine_name == VACCINES["HEPB"].name
    assert _error(lambda: stub.RecordVaccination(dose("HEPB", 1, 60))).code == "ALREADY_EXISTS"
    assert _error(lambda: stub.RecordVaccination(dose("HEPB", 3, 5))).code == (
        "FAILED_PRECONDITION"
    )
    too_soon = _error(lambda: stub.RecordVaccination(dose("HEPB", 2, 50)))
    assert too_soon.code == "FAILED_PRECONDITION" and "due from" in too_soon.message
    stub.RecordVaccination(dose("HEPB", 2, 1))
    assert [(v.vaccine_code, v.dose) for v in _vaccinations(stub, child)] == [
        ("HEPB", 1),
        ("HEPB", 2),
    ]


def test_the_free_choice_of_a_clinic_is_once_a_year(stub: pb_grpc.HealthRegistryStub) -> None:
    person = next(p for p in WORLD.persons() if p.alive and p.age() > 30)
    current = stub.GetAttachment(pb.GetAttachmentRequest(iin=person.iin))
    same_city = [
        c.id
        for c in WORLD.institutions(CLINIC)
        if c.city == person.address.city and c.id != current.clinic_id
    ]
    other_city = next(c for c in WORLD.institutions(CLINIC) if c.city != person.address.city)
    moved = stub.AttachToClinic(pb.AttachToClinicRequest(iin=person.iin, clinic_id=same_city[0]))
    assert moved.clinic_id == same_city[0]  # the last choice was more than a year ago
    back = pb.AttachToClinicRequest(iin=person.iin, clinic_id=current.clinic_id)
    refused = _error(lambda: stub.AttachToClinic(back))
    assert refused.code == "FAILED_PRECONDITION" and "once a year" in refused.message
    earlier = pb.AttachToClinicRequest(
        iin=person.iin,
        clinic_id=other_city.id,
        attached_date=(TODAY - dt.timedelta(days=1)).isoformat(),
    )
    assert _error(lambda: stub.AttachToClinic(earlier)).code == "FAILED_PRECONDITION"
    # Moving to another city is the exception.
    away = stub.AttachToClinic(pb.AttachToClinicRequest(iin=person.iin, clinic_id=other_city.id))
    assert away.clinic_id == other_city.id and away.clinic_name == other_city.name


def test_bad_requests_change_nothing(stub: pb_grpc.HealthRegistryStub) -> None:
    person = next(p for p in WORLD.persons() if p.alive and 8 < p.age() < 16)
    clinic = stub.GetAttachment(pb.GetAttachmentRequest(iin=person.iin)).clinic_id
    before = _vaccinations(stub, person.iin)
    tomorrow = (TODAY + dt.timedelta(days=1)).isoformat()

    def dose(**kw: Any) -> pb.RecordVaccinationRequest:
        fields: dict[str, Any] = {"iin": person.iin, "vaccine_code": "COVID19", "dose": 1}
        fields["clinic_id"] = clinic
        return pb.RecordVaccinationRequest(**{**fields, **kw})

    cases = {
        "INVALID_IDENTIFIER": [dose(iin="123"), dose(iin="")],
        "INVALID_REQUEST": [
            dose(vaccine_code="FLU"),
            dose(vaccine_code=""),
            dose(dose=0),
            dose(dose=3),
            dose(given_date=tomorrow),
            dose(given_date="13.01.2025"),
            dose(clinic_id=""),
        ],
        "FAILED_PRECONDITION": [dose(given_date="2000-01-01")],
        "NOT_FOUND": [dose(clinic_id="PHC-ALA-999")],
    }
    for code, requests in cases.items():
        for request in requests:
            assert _error(lambda r=request: stub.RecordVaccination(r)).code == code, request
    assert _vaccinations(stub, person.iin) == before
    attach = {
        "INVALID_REQUEST": pb.AttachToClinicRequest(iin=person.iin, attached_date=tomorrow),
        "NOT_FOUND": pb.AttachToClinicRequest(iin=person.iin, clinic_id="PHC-ALA-999"),
        "INVALID_IDENTIFIER": pb.AttachToClinicRequest(iin="900101300000", clinic_id=clinic),
    }
    for code, request in attach.items():
        assert _error(lambda r=request: stub.AttachToClinic(r)).code == code
    assert stub.GetAttachment(pb.GetAttachmentRequest(iin=person.iin)).clinic_id == clinic
    assert _vaccinations(stub, WORLD.unknown_iin()) == []
    unknown = pb.GetAttachmentRequest(iin=WORLD.unknown_iin())
    assert _error(lambda: stub.GetAttachment(unknown)).code == "NOT_FOUND"


def test_the_dead_were_vaccinated_only_while_alive(stub: pb_grpc.HealthRegistryStub) -> None:
    dead: list[Person] = [p for p in WORLD.persons() if p.death_date is not None]
    assert dead
    for person in dead:
        assert person.death_date is not None
        for v in _vaccinations(stub, person.iin):
            assert v.given_date < person.death_date.isoformat()
