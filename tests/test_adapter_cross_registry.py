"""One person generated once is the same person in every registry (over real gRPC).

The stores are filled in separate worker processes from the world's seed alone; the
test then asks each running adapter about the same persons and checks that the
answers agree with each other and with the world.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from adapters.population import InstitutionKind, Person, World
from adapters.population.generate import populate_agencies
from adapters.sdk import RunningAdapter, load, run_agency
from govbus.errors import from_rpc_error
from govbus.pb.agencies.address.v1 import address_pb2, address_pb2_grpc
from govbus.pb.agencies.education.v1 import education_pb2, education_pb2_grpc
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc
from govbus.pb.agencies.migration.v1 import migration_pb2, migration_pb2_grpc
from govbus.pb.agencies.zags.v1 import zags_pb2, zags_pb2_grpc

SEED, PERSONS = 21, 2000
CODES = ("gbdfl", "zags", "address", "migration", "education")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, grpc.Channel]]:
    stores: Path = tmp_path_factory.mktemp("stores")
    populate_agencies(stores, seed=SEED, persons=PERSONS, codes=CODES, jobs=2)
    running: list[RunningAdapter] = []
    channels = {}
    try:
        for code in CODES:
            adapter = run_agency(load(code), stores / f"{code}.db").start()
            running.append(adapter)
            channels[code] = adapter.channel()
        yield channels
    finally:
        for adapter in running:
            adapter.stop()


def _sample() -> list[Person]:
    """Persons of every kind: heads, wives, children, singles, the dead, small children."""
    world = World(SEED, PERSONS)
    chosen: dict[int, Person] = {}
    for household in world.households():
        for person in household.members:
            key = (person.role, person.alive, person.age() < 6)
            if sum((p.role, p.alive, p.age() < 6) == key for p in chosen.values()) < 3:
                chosen[person.index] = person
    return list(chosen.values())


def test_the_same_persons_in_every_registry(adapters: dict[str, grpc.Channel]) -> None:
    gbdfl = gbdfl_pb2_grpc.PersonRegistryStub(adapters["gbdfl"])
    zags = zags_pb2_grpc.CivilRegistryStub(adapters["zags"])
    address = address_pb2_grpc.AddressRegisterStub(adapters["address"])
    migration = migration_pb2_grpc.ResidenceRegistryStub(adapters["migration"])
    education = education_pb2_grpc.EducationRegistryStub(adapters["education"])
    world = World(SEED, PERSONS)
    sample = _sample()
    assert len(sample) >= 15

    for person in sample:
        # ГБД ФЛ and ЗАГС agree on who the person is and who their parents are.
        record = gbdfl.GetPerson(gbdfl_pb2.GetPersonRequest(iin=person.iin))
        act = zags.GetBirthRecord(zags_pb2.GetBirthRecordRequest(iin=person.iin))
        assert record.birth_date == act.birth_date == person.birth_date.isoformat()
        assert record.first_name == act.first_name == person.first_name
        assert record.patronymic == act.patronymic
        assert record.sex == act.sex
        assert record.birth_record_id == act.record_id
        relatives = list(gbdfl.ListRelatives(gbdfl_pb2.ListRelativesRequest(iin=person.iin)))
        parents = {
            r.relation: r.iin
            for r in relatives
            if r.relation in (gbdfl_pb2.RELATION_FATHER, gbdfl_pb2.RELATION_MOTHER)
        }
        assert parents.get(gbdfl_pb2.RELATION_FATHER, "") == act.father_iin
        assert parents.get(gbdfl_pb2.RELATION_MOTHER, "") == act.mother_iin

        # Death: the same date in both.
        if person.death_date is not None:
            death = zags.GetDeathRecord(zags_pb2.GetDeathRecordRequest(iin=person.iin))
            assert death.death_date == record.death_date == person.death_date.isoformat()

        # Residence: the migration police's address is in the address register, and
        # the whole living household is registered there.
        history = list(
            migration.ListRegistrationHistory(
                migration_pb2.ListRegistrationHistoryRequest(iin=person.iin)
            )
        )
        last = history[-1]
        assert last.rca == person.address.rca
        assert last.current == person.alive
        registered = address.GetAddress(address_pb2.GetAddressRequest(rca=last.rca))
        assert registered.line == last.address_line == person.address.line()
        if person.alive:
            residents = migration.ListResidents(migration_pb2.ListResidentsRequest(rca=last.rca))
            household = world.household_of(person.index)
            assert {r.iin for r in residents} == {p.iin for p in household.members if p.alive}

        # Education: a small child is queued in a kindergarten of their own city, whose
        # address is in the address register, on their mother's application.
        if person.alive and person.mother is not None and person.age() < 6:
            entry = education.GetQueueEntry(
                education_pb2.GetQueueEntryRequest(child_iin=person.iin)
            )
            assert entry.applicant_iin == act.mother_iin
            kindergarten = world.institution_for(InstitutionKind.KINDERGARTEN, person.address)
            assert entry.kindergarten_id == kindergarten.id
            assert entry.city == registered.city
            listed = education.ListKindergartens(
                education_pb2.ListKindergartensRequest(city=registered.city)
            )
            rca = next(k.rca for k in listed if k.id == entry.kindergarten_id)
            assert address.GetAddress(address_pb2.GetAddressRequest(rca=rca)).city == entry.city


def test_marriages_agree_between_zags_and_gbdfl(adapters: dict[str, grpc.Channel]) -> None:
    gbdfl = gbdfl_pb2_grpc.PersonRegistryStub(adapters["gbdfl"])
    zags = zags_pb2_grpc.CivilRegistryStub(adapters["zags"])
    world = World(SEED, PERSONS)
    checked = 0
    for household in world.households():
        if household.marriage is None or checked >= 20:
            continue
        husband, wife = household.members[:2]
        acts = list(zags.ListMarriages(zags_pb2.ListMarriagesRequest(iin=wife.iin)))
        assert [(a.husband_iin, a.wife_iin) for a in acts] == [(husband.iin, wife.iin)]
        record = gbdfl.GetPerson(gbdfl_pb2.GetPersonRequest(iin=wife.iin))
        assert record.last_name == acts[0].wife_surname_after
        dissolved = acts[0].status == zags_pb2.MARRIAGE_STATUS_DISSOLVED
        assert dissolved == (record.marital_status == gbdfl_pb2.MARITAL_STATUS_DIVORCED)
        checked += 1
    assert checked == 20


def test_a_person_unknown_to_the_world_is_unknown_everywhere(
    adapters: dict[str, grpc.Channel],
) -> None:
    unknown = World(SEED, PERSONS).unknown_iin()
    calls = [
        lambda: gbdfl_pb2_grpc.PersonRegistryStub(adapters["gbdfl"]).GetPerson(
            gbdfl_pb2.GetPersonRequest(iin=unknown)
        ),
        lambda: zags_pb2_grpc.CivilRegistryStub(adapters["zags"]).GetBirthRecord(
            zags_pb2.GetBirthRecordRequest(iin=unknown)
        ),
        lambda: migration_pb2_grpc.ResidenceRegistryStub(adapters["migration"]).GetRegistration(
            migration_pb2.GetRegistrationRequest(iin=unknown)
        ),
        lambda: education_pb2_grpc.EducationRegistryStub(adapters["education"]).GetQueueEntry(
            education_pb2.GetQueueEntryRequest(child_iin=unknown)
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as failure:
            call()
        assert from_rpc_error(failure.value).code == "NOT_FOUND"
