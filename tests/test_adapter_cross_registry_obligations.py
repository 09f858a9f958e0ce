"""Licences, courts, notaries, Kazpost and military registration agree with the civil registries.

The nine stores are filled in separate worker processes from the world's seed
alone; the test then asks the running adapters (over real gRPC) about the same
persons and checks that what the five registries of documents and obligations say
agrees with ГБД ФЛ, ЗАГС, the migration police and the address register.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from adapters.population import Person, World
from adapters.population.generate import populate_agencies
from adapters.sdk import UNKNOWN_IIN, RunningAdapter, load, run_agency
from govbus.errors import from_rpc_error
from govbus.ids import Sex
from govbus.pb.agencies.address.v1 import address_pb2, address_pb2_grpc
from govbus.pb.agencies.courts.v1 import courts_pb2, courts_pb2_grpc
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc
from govbus.pb.agencies.kazpost.v1 import kazpost_pb2, kazpost_pb2_grpc
from govbus.pb.agencies.licences.v1 import licences_pb2, licences_pb2_grpc
from govbus.pb.agencies.migration.v1 import migration_pb2, migration_pb2_grpc
from govbus.pb.agencies.military.v1 import military_pb2, military_pb2_grpc
from govbus.pb.agencies.notary.v1 import notary_pb2, notary_pb2_grpc
from govbus.pb.agencies.zags.v1 import zags_pb2, zags_pb2_grpc

SEED, PERSONS = 29, 2000
CODES = (
    "gbdfl",
    "zags",
    "address",
    "migration",
    "licences",
    "courts",
    "notary",
    "kazpost",
    "military",
)
WORLD = World(SEED, PERSONS)


class Bus:
    """Stubs to every running registry."""

    def __init__(self, channels: dict[str, grpc.Channel]) -> None:
        self.gbdfl = gbdfl_pb2_grpc.PersonRegistryStub(channels["gbdfl"])
        self.zags = zags_pb2_grpc.CivilRegistryStub(channels["zags"])
        self.address = address_pb2_grpc.AddressRegisterStub(channels["address"])
        self.migration = migration_pb2_grpc.ResidenceRegistryStub(channels["migration"])
        self.licences = licences_pb2_grpc.DrivingLicencesStub(channels["licences"])
        self.courts = courts_pb2_grpc.EnforcementRegisterStub(channels["courts"])
        self.notary = notary_pb2_grpc.NotaryRegistryStub(channels["notary"])
        self.kazpost = kazpost_pb2_grpc.PostalServiceStub(channels["kazpost"])
        self.military = military_pb2_grpc.MilitaryRegistrationStub(channels["military"])

    def person(self, iin: str) -> gbdfl_pb2.Person:
        return self.gbdfl.GetPerson(gbdfl_pb2.GetPersonRequest(iin=iin))

    def cases(self, iin: str) -> list[courts_pb2.CourtCase]:
        party = courts_pb2.Party(iin=iin)
        return list(self.courts.ListCourtCases(courts_pb2.ListCourtCasesRequest(party=party)))


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    stores: Path = tmp_path_factory.mktemp("stores")
    populate_agencies(stores, seed=SEED, persons=PERSONS, codes=CODES, jobs=2)
    running: list[RunningAdapter] = []
    channels = {}
    try:
        for code in CODES:
            adapter = run_agency(load(code), stores / f"{code}.db").start()
            running.append(adapter)
            channels[code] = adapter.channel()
        yield Bus(channels)
    finally:
        for adapter in running:
            adapter.stop()


def _code(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as failure:
        result = call()
        if not hasattr(result, "DESCRIPTOR"):
            list(result)
    return from_rpc_error(failure.value).code


def _sample() -> list[Person]:
    """Persons of every kind: men and women, young and old, living and dead."""
    chosen: dict[tuple[object, ...], list[Person]] = {}
    for person in WORLD.persons():
        key = (person.sex, person.alive, min(person.age() // 17, 4))
        group = chosen.setdefault(key, [])
        if len(group) < 3:
            group.append(person)
    return [p for group in chosen.values() for p in group]


def test_the_same_persons_in_every_registry(bus: Bus) -> None:
    sample = _sample()
    assert len(sample) >= 25
    for person in sample:
        record = bus.person(person.iin)
        born = dt.date.fromisoformat(record.birth_date)

        # Licences: only adults hold one, a deceased holder's is no longer valid.
        try:
            history = list(
                bus.licences.ListLicenceHistory(
                    licences_pb2.ListLicenceHistoryRequest(iin=person.iin)
                )
            )
        except grpc.RpcError as error:
            assert from_rpc_error(error).code == "NOT_FOUND"
            history = []
        for licence in history:
            assert licence.iin == record.iin
            assert dt.date.fromisoformat(licence.issued_date) >= born.replace(year=born.year + 16)
        if history and record.death_date:
            assert history[-1].status == licences_pb2.LICENCE_STATUS_EXPIRED

        # Military: every man from 17 is registered, with his city's defence office; the
        # dead are deregistered, and ЗАГС has their death.
        if person.sex is Sex.MALE and person.age(person.death_date or WORLD.today) >= 17:
            military = bus.military.GetRecord(military_pb2.GetRecordRequest(iin=person.iin))
            registration = list(
                bus.migration.ListRegistrationHistory(
                    migration_pb2.ListRegistrationHistoryRequest(iin=person.iin)
                )
            )[-1]
            city = bus.address.GetAddress(address_pb2.GetAddressRequest(rca=registration.rca)).city
            assert military.office.endswith(f"г. {city}")
            if record.death_date:
                assert military.status == military_pb2.MILITARY_STATUS_DEREGISTERED
                death = bus.zags.GetDeathRecord(zags_pb2.GetDeathRecordRequest(iin=person.iin))
                assert death.death_date == record.death_date

        # Kazpost: a living adult's contact is their registered address, with the postal
        # code of the address register; every delivery went to an address that exists.
        if not record.death_date and person.age() >= 16:
            contact = bus.kazpost.GetDeliveryContact(
                kazpost_pb2.GetDeliveryContactRequest(iin=person.iin)
            )
            current = bus.migration.GetRegistration(
                migration_pb2.GetRegistrationRequest(iin=person.iin)
            )
            address = bus.address.GetAddress(address_pb2.GetAddressRequest(rca=current.rca))
            assert contact.rca == current.rca
            assert contact.postal_code == address.postal_code
            deliveries = bus.kazpost.ListDeliveries(
                kazpost_pb2.ListDeliveriesRequest(iin=person.iin)
            )
            for delivery in deliveries:
                bus.address.GetAddress(address_pb2.GetAddressRequest(rca=delivery.rca))
                if delivery.document_kind == "ID_CARD":
                    issued = dt.date.fromisoformat(record.document.issued_date)
                    created = dt.date.fromisoformat(delivery.created_date)
                    assert 0 < (created - issued).days <= 7


def test_inheritance_follows_zags_deaths_and_gbdfl_families(bus: Bus) -> None:
    checked = 0
    for person in WORLD.persons():
        if person.alive:
            continue
        cases = list(
            bus.notary.ListInheritanceCases(
                notary_pb2.ListInheritanceCasesRequest(deceased_iin=person.iin)
            )
        )
        if not cases:
            continue
        death = bus.zags.GetDeathRecord(zags_pb2.GetDeathRecordRequest(iin=person.iin))
        died = dt.date.fromisoformat(death.death_date)
        (case,) = cases
        opened = dt.date.fromisoformat(case.opened_date)
        assert died < opened <= died + dt.timedelta(days=183)
        relatives = {
            r.iin
            for r in bus.gbdfl.ListRelatives(gbdfl_pb2.ListRelativesRequest(iin=person.iin))
            if r.relation != gbdfl_pb2.RELATION_FORMER_SPOUSE
        }
        assert set(case.heir_iins) <= relatives
        for heir in case.heir_iins:
            heir_death = bus.person(heir).death_date
            assert not heir_death or heir_death > death.death_date
        checked += 1
    assert checked >= 10


def test_court_divorces_are_zags_dissolutions(bus: Bus) -> None:
    checked = 0
    for household in WORLD.households():
        if household.marriage is None or household.marriage.divorced is None:
            continue
        husband, wife = household.members[:2]
        his = {c.case_number: c for c in bus.cases(husband.iin)}
        shared = [c for c in bus.cases(wife.iin) if c.case_number in his]
        if not shared:
            continue
        (act,) = bus.zags.ListMarriages(zags_pb2.ListMarriagesRequest(iin=wife.iin))
        assert act.status == zags_pb2.MARRIAGE_STATUS_DISSOLVED
        assert {act.husband_iin, act.wife_iin} == {husband.iin, wife.iin}
        assert shared[0].decision_date < act.dissolved_date
        checked += 1
    assert checked >= 2


def test_a_suspended_licence_has_its_court_decision(bus: Bus) -> None:
    checked = 0
    for person in WORLD.persons():
        if not person.alive or person.age() < 18:
            continue
        try:
            licence = bus.licences.GetLicence(licences_pb2.GetLicenceRequest(iin=person.iin))
        except grpc.RpcError:
            continue
        if licence.status != licences_pb2.LICENCE_STATUS_SUSPENDED:
            continue
        admin = [c for c in bus.cases(person.iin) if c.kind == courts_pb2.CASE_KIND_ADMINISTRATIVE]
        assert len(admin) == 1 and admin[0].role == courts_pb2.PARTY_ROLE_DEFENDANT
        assert admin[0].decision_date < licence.suspended_until
        checked += 1
    assert checked >= 1


def test_a_person_unknown_to_the_world_is_unknown_everywhere(bus: Bus) -> None:
    assert WORLD.index_of(UNKNOWN_IIN) is None
    missing = [
        lambda: bus.licences.GetLicence(licences_pb2.GetLicenceRequest(iin=UNKNOWN_IIN)),
        lambda: bus.military.GetRecord(military_pb2.GetRecordRequest(iin=UNKNOWN_IIN)),
        lambda: bus.kazpost.GetDeliveryContact(
            kazpost_pb2.GetDeliveryContactRequest(iin=UNKNOWN_IIN)
        ),
    ]
    for call in missing:
        assert _code(call) == "NOT_FOUND"
    status = bus.courts.GetDebtorStatus(
        courts_pb2.GetDebtorStatusRequest(party=courts_pb2.Party(iin=UNKNOWN_IIN))
    )
    assert not status.is_debtor
    assert not list(
        bus.notary.ListPowersOfAttorney(notary_pb2.ListPowersOfAttorneyRequest(iin=UNKNOWN_IIN))
    )
