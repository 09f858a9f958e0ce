"""Companies, taxes, property, fines and convictions agree across registries (over real gRPC).

The stores of ГБД ФЛ, the address register, the migration police, ГБД ЮЛ, КГД, the
real-estate register, the fines register and КПСиСУ are filled from one seed; the
test asks the running adapters about the same companies and persons and checks that
every link one registry gives (an IIN, a BIN, an address code, a plate) resolves in
the registry that owns it, with the same facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from adapters.population import World
from adapters.population.generate import populate_agencies
from adapters.sdk import RunningAdapter, load, run_agency
from adapters.tax.data import RESTRICTION_THRESHOLD_TIYN
from govbus.errors import from_rpc_error
from govbus.pb.agencies.address.v1 import address_pb2, address_pb2_grpc
from govbus.pb.agencies.criminal.v1 import criminal_pb2, criminal_pb2_grpc
from govbus.pb.agencies.fines.v1 import fines_pb2, fines_pb2_grpc
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc
from govbus.pb.agencies.gbdul.v1 import gbdul_pb2, gbdul_pb2_grpc
from govbus.pb.agencies.migration.v1 import migration_pb2, migration_pb2_grpc
from govbus.pb.agencies.realestate.v1 import realestate_pb2, realestate_pb2_grpc
from govbus.pb.agencies.tax.v1 import tax_pb2, tax_pb2_grpc

SEED, PERSONS = 23, 2000
CODES = ("gbdfl", "address", "migration", "gbdul", "tax", "realestate", "fines", "criminal")
WORLD = World(SEED, PERSONS)


class Stubs:
    def __init__(self, channels: dict[str, grpc.Channel]) -> None:
        self.gbdfl = gbdfl_pb2_grpc.PersonRegistryStub(channels["gbdfl"])
        self.address = address_pb2_grpc.AddressRegisterStub(channels["address"])
        self.migration = migration_pb2_grpc.ResidenceRegistryStub(channels["migration"])
        self.gbdul = gbdul_pb2_grpc.LegalEntityRegistryStub(channels["gbdul"])
        self.tax = tax_pb2_grpc.TaxServiceStub(channels["tax"])
        self.realestate = realestate_pb2_grpc.RealEstateRegisterStub(channels["realestate"])
        self.fines = fines_pb2_grpc.AdministrativeFinesStub(channels["fines"])
        self.criminal = criminal_pb2_grpc.CriminalRecordsStub(channels["criminal"])

    def person(self, iin: str) -> gbdfl_pb2.Person:
        return self.gbdfl.GetPerson(gbdfl_pb2.GetPersonRequest(iin=iin))

    def address_line(self, rca: str) -> str:
        return str(self.address.GetAddress(address_pb2.GetAddressRequest(rca=rca)).line)

    def properties(self, **holder: str) -> list[realestate_pb2.Property]:
        request = realestate_pb2.ListPropertiesByHolderRequest(**holder)
        return list(self.realestate.ListPropertiesByHolder(request))


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stubs]:
    stores: Path = tmp_path_factory.mktemp("stores")
    populate_agencies(stores, seed=SEED, persons=PERSONS, codes=CODES, jobs=1)
    running: list[RunningAdapter] = []
    try:
        channels = {}
        for code in CODES:
            adapter = run_agency(load(code), stores / f"{code}.db").start()
            running.append(adapter)
            channels[code] = adapter.channel()
        yield Stubs(channels)
    finally:
        for adapter in running:
            adapter.stop()


def _full_name(person: gbdfl_pb2.Person) -> str:
    return f"{person.last_name} {person.first_name} {person.patronymic}".strip()


def test_companies_agree_everywhere(stubs: Stubs) -> None:
    for company in WORLD.companies():
        entity = stubs.gbdul.GetEntity(gbdul_pb2.GetEntityRequest(bin=company.bin))
        # The director is a person of ГБД ФЛ, under the same name.
        assert _full_name(stubs.person(entity.director_iin)) == entity.director_name
        # The legal address is in the address register, with the same line.
        assert stubs.address_line(entity.rca) == entity.address_line
        # КГД knows the same entity, registered the same day.
        taxpayer = stubs.tax.GetTaxpayer(
            tax_pb2.GetTaxpayerRequest(id=tax_pb2.TaxpayerId(bin=entity.bin))
        )
        assert (taxpayer.name, taxpayer.registered_date) == (
            entity.name,
            entity.registration_date,
        )
        for founder in stubs.gbdul.ListFounders(gbdul_pb2.ListFoundersRequest(bin=entity.bin)):
            if founder.HasField("iin"):
                assert _full_name(stubs.person(founder.iin)) == founder.name
            else:
                parent = stubs.gbdul.GetEntity(gbdul_pb2.GetEntityRequest(bin=founder.bin))
                assert parent.registration_date < entity.registration_date
        offices = stubs.properties(bin=entity.bin)
        if entity.status == gbdul_pb2.ENTITY_STATUS_LIQUIDATED:
            assert offices == []
            debt = stubs.tax.GetDebtStatus(
                tax_pb2.GetDebtStatusRequest(id=tax_pb2.TaxpayerId(bin=entity.bin))
            )
            assert not debt.has_debt
        for office in offices:
            assert office.rca == entity.rca
            assert office.address_line == stubs.address_line(office.rca)


def test_persons_agree_everywhere(stubs: Stubs) -> None:
    checked = owners = 0
    for household in WORLD.households(0, 7):
        for member in household.members:
            record = stubs.person(member.iin)
            taxpayer = stubs.tax.GetTaxpayer(
                tax_pb2.GetTaxpayerRequest(id=tax_pb2.TaxpayerId(iin=member.iin))
            )
            assert taxpayer.name in (_full_name(record), f"ИП {_full_name(record)}")
            born = dt.date.fromisoformat(record.birth_date)
            died = dt.date.fromisoformat(record.death_date) if record.death_date else None

            # The dwelling they hold is where they live, as the address register and the
            # migration police have it.
            for prop in stubs.properties(iin=member.iin):
                owners += 1
                assert prop.address_line == stubs.address_line(prop.rca)
                if died is None:
                    registration = stubs.migration.GetRegistration(
                        migration_pb2.GetRegistrationRequest(iin=member.iin)
                    )
                    assert registration.rca == prop.rca

            # Fines: issued to someone alive and of age, on the plate of their own vehicle.
            plates = {v.plate for v in WORLD.vehicles_of(member)}
            for fine in stubs.fines.ListFines(fines_pb2.ListFinesRequest(iin=member.iin)):
                issued = dt.date.fromisoformat(fine.issued_date)
                assert member.age(issued) >= 16 and (died is None or issued <= died)
                assert born < issued
                assert fine.vehicle_plate == "" or fine.vehicle_plate in plates

            # Convictions: at 16 or later, and not after death.
            request = criminal_pb2.ListConvictionsRequest(iin=member.iin, include_expunged=True)
            for conviction in stubs.criminal.ListConvictions(request):
                verdict = dt.date.fromisoformat(conviction.verdict_date)
                assert member.age(verdict) >= 16 and (died is None or verdict <= died)
            checked += 1
    assert checked == 7 * 40 and owners > 60


def test_tax_restrictions_on_property_name_real_debtors(stubs: Stubs) -> None:
    arrests = 0
    for household in WORLD.households():
        number = WORLD.property_of(household).cadastral_number
        listed = stubs.realestate.ListEncumbrances(
            realestate_pb2.ListEncumbrancesRequest(cadastral_number=number)
        )
        for encumbrance in listed:
            if encumbrance.kind != realestate_pb2.ENCUMBRANCE_KIND_ARREST:
                continue
            arrests += 1
            prop = stubs.realestate.GetProperty(
                realestate_pb2.GetPropertyRequest(cadastral_number=number)
            )
            assert prop.encumbered
            # One of the holders owes the tax office that placed the restriction at
            # least the threshold.
            debtors = []
            for holder in prop.holders:
                taxpayer_id = tax_pb2.TaxpayerId(iin=holder.iin)
                status = stubs.tax.GetDebtStatus(tax_pb2.GetDebtStatusRequest(id=taxpayer_id))
                office = stubs.tax.GetTaxpayer(tax_pb2.GetTaxpayerRequest(id=taxpayer_id))
                principal = sum(d.principal_tiyn for d in status.debts)
                if principal >= RESTRICTION_THRESHOLD_TIYN:
                    debtors.append(office.tax_office)
            assert encumbrance.holder in debtors
    assert arrests > 0


def test_a_person_unknown_to_the_world_is_unknown_or_clean_everywhere(stubs: Stubs) -> None:
    unknown = WORLD.unknown_iin()
    with pytest.raises(grpc.RpcError) as failure:
        stubs.tax.GetTaxpayer(tax_pb2.GetTaxpayerRequest(id=tax_pb2.TaxpayerId(iin=unknown)))
    assert from_rpc_error(failure.value).code == "NOT_FOUND"
    check = stubs.criminal.CheckRecord(criminal_pb2.CheckRecordRequest(iin=unknown))
    assert not check.has_convictions and not check.wanted
    summary = stubs.fines.GetFineSummary(fines_pb2.GetFineSummaryRequest(iin=unknown))
    assert summary.total_count == 0
    assert stubs.properties(iin=unknown) == []
    links = stubs.gbdul.ListEntitiesByPerson(gbdul_pb2.ListEntitiesByPersonRequest(iin=unknown))
    assert list(links) == []
