"""Land, pension, benefits, health and vehicles agree with the other registries (real gRPC).

The stores are filled in separate worker processes from the world's seed alone. The
test asks the running adapters about the same persons and checks that every IIN,
BIN and address code one registry names is the one the others know: ГБД ФЛ knows the
person (alive or not, the same birth date), ЗАГС their births and deaths, the address
register and the migration police the addresses of plots and clinics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from adapters.benefits.rates import retirement_date
from adapters.population import Person, World
from adapters.population.generate import populate_agencies
from adapters.sdk import RunningAdapter, load, run_agency
from govbus.errors import from_rpc_error
from govbus.ids import Iin
from govbus.pb.agencies.address.v1 import address_pb2, address_pb2_grpc
from govbus.pb.agencies.benefits.v1 import benefits_pb2, benefits_pb2_grpc
from govbus.pb.agencies.gbdfl.v1 import gbdfl_pb2, gbdfl_pb2_grpc
from govbus.pb.agencies.health.v1 import health_pb2, health_pb2_grpc
from govbus.pb.agencies.land.v1 import land_pb2, land_pb2_grpc
from govbus.pb.agencies.migration.v1 import migration_pb2, migration_pb2_grpc
from govbus.pb.agencies.pension.v1 import pension_pb2, pension_pb2_grpc
from govbus.pb.agencies.vehicles.v1 import vehicles_pb2, vehicles_pb2_grpc
from govbus.pb.agencies.zags.v1 import zags_pb2, zags_pb2_grpc

SEED, PERSONS = 29, 2000
CODES = (
    "land",
    "pension",
    "benefits",
    "health",
    "vehicles",
    "gbdfl",
    "zags",
    "address",
    "migration",
)
WORLD = World(SEED, PERSONS)


class Registries:
    def __init__(self, channels: dict[str, grpc.Channel]) -> None:
        self.land = land_pb2_grpc.LandCadastreStub(channels["land"])
        self.pension = pension_pb2_grpc.PensionFundStub(channels["pension"])
        self.benefits = benefits_pb2_grpc.StateBenefitsStub(channels["benefits"])
        self.health = health_pb2_grpc.HealthRegistryStub(channels["health"])
        self.vehicles = vehicles_pb2_grpc.VehicleRegistryStub(channels["vehicles"])
        self.gbdfl = gbdfl_pb2_grpc.PersonRegistryStub(channels["gbdfl"])
        self.zags = zags_pb2_grpc.CivilRegistryStub(channels["zags"])
        self.address = address_pb2_grpc.AddressRegisterStub(channels["address"])
        self.migration = migration_pb2_grpc.ResidenceRegistryStub(channels["migration"])

    def person(self, iin: str) -> gbdfl_pb2.Person:
        return self.gbdfl.GetPerson(gbdfl_pb2.GetPersonRequest(iin=iin))

    def alive(self, iin: str) -> bool:
        return self.person(iin).life_status == gbdfl_pb2.LIFE_STATUS_ALIVE

    def death(self, iin: str) -> str:
        try:
            return str(self.zags.GetDeathRecord(zags_pb2.GetDeathRecordRequest(iin=iin)).death_date)
        except grpc.RpcError as error:
            assert from_rpc_error(error).code == "NOT_FOUND"
            return ""


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    stores: Path = tmp_path_factory.mktemp("stores")
    populate_agencies(stores, seed=SEED, persons=PERSONS, codes=CODES, jobs=2)
    running: list[RunningAdapter] = []
    try:
        channels = {}
        for code in CODES:
            adapter = run_agency(load(code), stores / f"{code}.db").start()
            running.append(adapter)
            channels[code] = adapter.channel()
        yield Registries(channels)
    finally:
        for adapter in running:
            adapter.stop()


def _sample() -> list[Person]:
    """Every fifth person: heads, wives, children, singles, the dead, pensioners."""
    return [p for p in WORLD.persons() if p.index % 5 == 0]


def test_plots_and_vehicles_belong_to_persons_and_addresses_the_others_know(
    bus: Registries,
) -> None:
    plots = vehicles = 0
    for person in _sample():
        holder = bus.person(person.iin)
        assert holder.birth_date == person.birth_date.isoformat()
        for plot in bus.land.ListPlotsByHolder(land_pb2.ListPlotsByHolderRequest(iin=person.iin)):
            plots += 1
            if not plot.rca:
                continue  # a garden outside town has no address code
            address = bus.address.GetAddress(address_pb2.GetAddressRequest(rca=plot.rca))
            assert address.line == plot.address_line
            if person.alive:
                residents = bus.migration.ListResidents(
                    migration_pb2.ListResidentsRequest(rca=plot.rca)
                )
                assert person.iin in {r.iin for r in residents}
        owned = bus.vehicles.ListVehiclesByOwner(
            vehicles_pb2.ListVehiclesByOwnerRequest(owner=vehicles_pb2.Owner(iin=person.iin))
        )
        for vehicle in owned:
            vehicles += 1
            # An owner is a living adult, and the plate's region is where they live.
            assert holder.life_status == gbdfl_pb2.LIFE_STATUS_ALIVE
            assert Iin(person.iin).birth_date.isoformat() < vehicle.registered_date
            registration = bus.migration.GetRegistration(
                migration_pb2.GetRegistrationRequest(iin=person.iin)
            )
            assert vehicle.plate[-2:] == registration.rca[:2]
    assert plots >= 20 and vehicles >= 50
    # Plots under company buildings stand at the companies' addresses.
    offices = 0
    for company in WORLD.companies():
        request = land_pb2.ListPlotsByHolderRequest(bin=company.bin)
        for plot in bus.land.ListPlotsByHolder(request):
            if plot.rca:
                offices += 1
                assert plot.rca == company.address.rca
                line = bus.address.GetAddress(address_pb2.GetAddressRequest(rca=plot.rca)).line
                assert line == plot.address_line
    assert offices


def test_pension_contributions_come_from_the_employer(bus: Registries) -> None:
    accounts = 0
    for person in _sample():
        try:
            account = bus.pension.GetAccount(pension_pb2.GetAccountRequest(iin=person.iin))
        except grpc.RpcError as error:
            assert from_rpc_error(error).code == "NOT_FOUND"
            continue
        accounts += 1
        assert account.iin == person.iin and bus.alive(person.iin)
        assert bus.person(person.iin).birth_date < account.opened_date
        agents = {
            c.agent_bin
            for c in bus.pension.ListContributions(
                pension_pb2.ListContributionsRequest(iin=person.iin)
            )
        }
        if person.employer is not None and agents:
            assert agents == {WORLD.company(person.employer).bin}
    assert accounts >= 100


def test_benefits_agree_with_births_deaths_and_ages(bus: Registries) -> None:
    kinds: set[int] = set()
    for person in _sample():
        record = bus.person(person.iin)
        benefits = list(bus.benefits.ListBenefits(benefits_pb2.ListBenefitsRequest(iin=person.iin)))
        for benefit in benefits:
            kinds.add(benefit.kind)
            assert benefit.iin == person.iin
            if benefit.kind in (
                benefits_pb2.BENEFIT_KIND_BIRTH_GRANT,
                benefits_pb2.BENEFIT_KIND_CHILDCARE,
            ):
                act = bus.zags.GetBirthRecord(zags_pb2.GetBirthRecordRequest(iin=benefit.child_iin))
                assert act.mother_iin == person.iin
                assert benefit.start_date >= act.birth_date
            if benefit.kind == benefits_pb2.BENEFIT_KIND_AGE_PENSION:
                born = dt.date.fromisoformat(record.birth_date)
                sex = Iin(person.iin).sex
                assert benefit.start_date == retirement_date(born, sex).isoformat()
                death = bus.death(person.iin)
                assert benefit.end_date == death
                assert (benefit.status == benefits_pb2.BENEFIT_STATUS_ENDED) == bool(death)
            if benefit.kind == benefits_pb2.BENEFIT_KIND_FUNERAL_GRANT:
                marriages = zags_pb2.ListMarriagesRequest(iin=person.iin)
                spouses = [
                    m.wife_iin if m.husband_iin == person.iin else m.husband_iin
                    for m in bus.zags.ListMarriages(marriages)
                ]
                assert any(bus.death(s) for s in spouses)
    assert {
        benefits_pb2.BENEFIT_KIND_BIRTH_GRANT,
        benefits_pb2.BENEFIT_KIND_CHILDCARE,
        benefits_pb2.BENEFIT_KIND_AGE_PENSION,
    } <= kinds


def test_health_records_agree_with_residence_and_life(bus: Registries) -> None:
    clinics = {c.clinic_id: c for c in bus.health.ListClinics(health_pb2.ListClinicsRequest())}
    for clinic in clinics.values():
        # Every clinic is in the address register, in its own city.
        address = bus.address.GetAddress(address_pb2.GetAddressRequest(rca=clinic.rca))
        assert address.city == clinic.city
    for person in _sample():
        born = bus.person(person.iin).birth_date
        request = health_pb2.GetAttachmentRequest(iin=person.iin)
        if bus.death(person.iin):
            with pytest.raises(grpc.RpcError) as failure:
                bus.health.GetAttachment(request)
            assert from_rpc_error(failure.value).code == "NOT_FOUND"
        else:
            attachment = bus.health.GetAttachment(request)
            clinic = clinics[attachment.clinic_id]
            # The clinic is in the city the person lives in.
            home = bus.migration.GetRegistration(
                migration_pb2.GetRegistrationRequest(iin=person.iin)
            )
            city = bus.address.GetAddress(address_pb2.GetAddressRequest(rca=home.rca)).city
            assert clinic.city == city
        vaccinations = bus.health.ListVaccinations(
            health_pb2.ListVaccinationsRequest(iin=person.iin)
        )
        assert all(v.given_date >= born for v in vaccinations)


def test_a_person_unknown_to_the_world_is_unknown_to_these_registries(bus: Registries) -> None:
    unknown = WORLD.unknown_iin()
    for call in (
        lambda: bus.pension.GetAccount(pension_pb2.GetAccountRequest(iin=unknown)),
        lambda: bus.health.GetAttachment(health_pb2.GetAttachmentRequest(iin=unknown)),
    ):
        with pytest.raises(grpc.RpcError) as failure:
            call()
        assert from_rpc_error(failure.value).code == "NOT_FOUND"
    streams = (
        bus.land.ListPlotsByHolder(land_pb2.ListPlotsByHolderRequest(iin=unknown)),
        bus.benefits.ListBenefits(benefits_pb2.ListBenefitsRequest(iin=unknown)),
        bus.health.ListVaccinations(health_pb2.ListVaccinationsRequest(iin=unknown)),
        bus.vehicles.ListVehiclesByOwner(
            vehicles_pb2.ListVehiclesByOwnerRequest(owner=vehicles_pb2.Owner(iin=unknown))
        ),
    )
    for stream in streams:
        assert list(stream) == []
